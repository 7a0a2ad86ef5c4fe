"""No-op release and `doit list` at scale, against a bare-Python floor.

The floor is the least any tool must do to know nothing is pending: start
Python, parse every instruction and build file with PyYAML's C loader and
stat every artifact path. For each size (200, 2,000 and 20,000 released
instructions by default) the floor, a no-op `doit` and `doit list` run in
the same session, alternating, best of N, so the ratios hold on a noisy
shared machine. Peak memory is the largest max RSS of any run of each
(os.wait4's rusage of that one child).

Goals at the largest size: no-op at most 1.0x the floor, `doit list` at most
1.5x, both at most 150 MiB; and the no-op time grows at most linearly with
the number of instructions.
"""

from __future__ import annotations

import argparse
import os
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

GOALS = {"noop": 1.0, "list": 1.5}
CACHES = (".podrelease/plan.pickle", ".podrelease/instructions.pickle")
MEMORY_GOAL_MIB = 150


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time and the child's own peak RSS (MiB) of one run."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} exited {child.returncode} in {cwd}")
    return elapsed, usage.ru_maxrss / 1024


def measure(root: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Best time and peak RSS of each command, alternating to share the noise.

    Each doit command first runs once with podrelease's caches removed
    (`cold-noop`, `cold-list`: a first run, or a run after files changed);
    the measured runs then find the caches that run saved, as every run
    after it does.
    """
    commands = {
        "floor": [sys.executable, "-c", FLOOR, str(root)],
        "noop": [sys.executable, "-m", "doit"],
        "list": [sys.executable, "-m", "doit", "list"],
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for name in ("noop", "list"):
        for cache in CACHES:
            (root / cache).unlink(missing_ok=True)
        runs[f"cold-{name}"] = [timed(commands[name], root)]
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(timed(command, root))
    return {name: (min(t for t, _ in got), max(m for _, m in got)) for name, got in runs.items()}


def released_root(parent: Path, instructions: int) -> Path:
    root = generate(parent / f"root{instructions}", instructions)
    subprocess.run([sys.executable, "-m", "doit", "-n", "2", "-P", "thread"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run([sys.executable, "-m", "doit"], cwd=root, check=True, capture_output=True, text=True)
    assert not any(line.startswith(".  ") for line in done.stdout.splitlines()), "root is not fully released"
    return root


def report(count: int, got: dict[str, tuple[float, float]]) -> None:
    floor, floor_mib = got["floor"]
    print(f"{count:>6} instructions: floor {floor:.3f}s {floor_mib:.0f} MiB")
    for name in ("noop", "list"):
        seconds, mib = got[name]
        label = "doit     " if name == "noop" else "doit list"
        print(f"        {label} {seconds:.3f}s  ratio {seconds / floor:.2f}x (goal <= {GOALS[name]}x)  "
              f"peak {mib:.0f} MiB (goal <= {MEMORY_GOAL_MIB})")
        seconds, mib = got[f"cold-{name}"]
        print(f"          first run, no caches: {seconds:.3f}s  ratio {seconds / floor:.2f}x  peak {mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000, 20000], help="instructions per root")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="make (or reuse) the roots here instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        parent = args.keep or Path(tmp)
        results = {}
        for count in sorted(args.sizes):
            root = parent / f"root{count}"
            if not (args.keep and (root / "dodo.py").exists()):
                root = released_root(parent, count)
            results[count] = measure(root, args.repeats)
            report(count, results[count])
        sizes = sorted(results)
        for small, large in zip(sizes, sizes[1:], strict=False):
            grew = results[large]["noop"][0] / results[small]["noop"][0]
            print(f"growth {small} -> {large}: {large / small:.0f}x the instructions cost {grew:.2f}x the no-op time "
                  f"(linear or better: <= {large / small:.0f}x)")


if __name__ == "__main__":
    main()
