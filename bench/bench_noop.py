"""No-op release at scale: `doit` with nothing to do vs. a bare-Python floor.

The floor is the least any tool must do to know nothing is pending: start
Python, parse every instruction and build file with PyYAML's C loader and
stat every artifact path. Both run in the same session, alternating, best of
N, so the ratio holds on a noisy shared machine. Goal: at most 1.5x.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generate import generate  # noqa: E402

FLOOR = r"""
import os, sys, yaml
root = sys.argv[1]
for top in ("shipyard", "channels"):
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        for name in filenames:
            if name.endswith(".yaml"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    yaml.load(f, Loader=yaml.CSafeLoader)
                if top == "channels":
                    os.stat(path[:-5] + "/pod.json")
                    os.stat(os.path.join(dirpath, "tip"))
for top in ("images", "volumes"):
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        for name in filenames:
            os.stat(os.path.join(dirpath, name))
"""


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def best_pair(root: Path, repeats: int) -> tuple[float, float]:
    """Best-of-N for the floor and for doit, alternating to share the noise."""
    floor, ours = [], []
    for _ in range(repeats):
        floor.append(timed([sys.executable, "-c", FLOOR, str(root)], root))
        ours.append(timed([sys.executable, "-m", "doit"], root))
    return min(floor), min(ours)


def released_root(parent: Path, instructions: int) -> Path:
    root = generate(parent / f"root{instructions}", instructions)
    subprocess.run([sys.executable, "-m", "doit", "-n", "2", "-P", "thread"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run([sys.executable, "-m", "doit"], cwd=root, check=True, capture_output=True, text=True)
    assert not any(line.startswith(".  ") for line in done.stdout.splitlines()), "root is not fully released"
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instructions", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for count in (args.small, args.instructions):
            root = released_root(Path(tmp), count)
            results[count] = best_pair(root, args.repeats)
            floor, ours = results[count]
            print(f"{count:>6} instructions: doit no-op {ours:.3f}s, floor {floor:.3f}s, ratio {ours / floor:.2f}x (goal <= 1.5x)")
        small, large = results[args.small][1], results[args.instructions][1]
        print(f"growth: {args.instructions // args.small}x the instructions cost {large / small:.2f}x the time (linear or better: <= {args.instructions / args.small:.0f}x)")


if __name__ == "__main__":
    main()
