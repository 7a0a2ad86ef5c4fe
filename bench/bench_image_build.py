"""Benchmark: build_image against `tar | tee sha512sum | pigz -6` on the same rootfs.

Generates a deterministic rootfs (text-like and random files, a few
thousand of them), then alternates the two contenders, best of N each:

  (a) bash: tar --sort=name --numeric-owner --mtime=@0 -cf - -C TREE . \\
            | tee >(sha512sum >/dev/null) | pigz -6 > OUT
  (b) podrelease.imaging.build_image on a rule copying TREE to / (no command)

Both run as child processes, measured with `os.wait4`, which gives that
child's own rusage (RUSAGE_CHILDREN would mix the pipeline's processes into
our peak RSS). Linux carries the RSS high-water mark across fork and exec,
so a child's ru_maxrss is at least its parent's RSS at fork: the rootfs is
generated in a child too, which keeps this parent small. CPU seconds are
printed as well: on a shared machine they say more than wall time.
Goals: time ratio ours/pipeline <= 1.0, peak RSS < 64 MiB.

    python bench/bench_image_build.py              # ~200 MB
    python bench/bench_image_build.py --size-mb 20 # quick
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from podrelease.build.archive import default_workers
from podrelease.build.imaging import build_image
from podrelease.core.names import Label
from podrelease.model.rules import ImageRule, RootfsEntry

SEED = 20240601
PIPELINE = "tar --sort=name --numeric-owner --mtime=@0 -cf - -C {tree} . | tee >(sha512sum >/dev/null) | pigz -6 > {out}"
RSS_GOAL_MIB = 64
MIB = 1024 * 1024


def generate_rootfs(tree: Path, size_mb: int, files: int, seed: int = SEED) -> None:
    """Write `files` files totalling about `size_mb` MB under `tree`.

    Sizes follow a heavy-tailed distribution (many small files, a few big
    ones), as in a real rootfs; about 60% of the files are text-like, the
    rest random (already-compressed data such as images or jars).
    """
    rng = random.Random(seed)
    corpus = _text_corpus(rng, 4 * MIB)
    weights = [rng.paretovariate(1.1) for _ in range(files)]
    scale = size_mb * 1_000_000 / sum(weights)
    for index, weight in enumerate(weights):
        size = max(1, int(weight * scale))
        path = tree / f"d{index % 23:02d}" / f"s{index % 7}" / f"f{index:05d}{'.txt' if rng.random() < 0.6 else '.bin'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _text(rng, corpus, size) if path.suffix == ".txt" else rng.randbytes(size)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rng.random() < 0.1 else 0o644)
    for index in range(files // 100):
        os.symlink(f"s{index % 7}", tree / f"d{index % 23:02d}" / f"link{index}")


def _text_corpus(rng: random.Random, size: int) -> bytes:
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(2, 10))) for _ in range(5000)]
    lines = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n"
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()[:size]


def _text(rng: random.Random, corpus: bytes, size: int) -> bytes:
    """`size` bytes of the corpus from random offsets (so big files are not one repeated window)."""
    parts = []
    remaining = size
    while remaining:
        start = rng.randrange(len(corpus))
        part = corpus[start : start + min(remaining, 256 * 1024)]
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process and the children it waited for
    peak_rss: int  # bytes, of the largest single process


def measure(argv: list[str]) -> Run:
    """Run `argv` and read its own rusage with `os.wait4` (not mixed with earlier children)."""
    start = time.perf_counter()
    child = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    if child.returncode:
        raise SystemExit(f"{argv[:3]} failed with status {child.returncode}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)  # Linux: KiB


def run_pipeline(tree: Path, out: Path) -> Run:
    return measure(["bash", "-c", PIPELINE.format(tree=tree, out=out)])


def run_build(src: Path, image_dir: Path) -> Run:
    """build_image in a fresh interpreter, so its peak RSS is its own."""
    return measure([sys.executable, __file__, "--child", str(src), str(image_dir)])


def child_build(src: Path, image_dir: Path) -> None:
    rule = ImageRule(
        label=Label("bench", "rootfs"),
        build_file=src / "build.yaml",
        line=1,
        name="bench/rootfs",
        rootfs=(RootfsEntry("rootfs/", "/"),),
    )
    build_image(rule, "1.0.0", image_dir)


def run(size_mb: int, files: int, runs: int, workdir: Path) -> None:
    src = workdir / "src"
    tree = src / "rootfs"
    tree.mkdir(parents=True)
    generated = measure([sys.executable, __file__, "--generate", str(tree), str(size_mb), str(files)])
    total = sum(path.stat().st_size for path in tree.rglob("*") if path.is_file() and not path.is_symlink())
    print(f"rootfs: {total / MIB:.1f} MiB in {files} files (+{files // 100} symlinks), generated in {generated.wall:.1f}s")
    print(f"cores available: {default_workers()}")
    pipeline_runs, build_runs = [], []
    for attempt in range(runs):
        out = workdir / "pipeline.tar.gz"
        pipeline_runs.append(run_pipeline(tree, out))
        pipeline_size = out.stat().st_size
        out.unlink()
        image_dir = workdir / "images" / str(attempt)
        build_runs.append(run_build(src, image_dir))
        image_size = (image_dir / "image.aci").stat().st_size
        shutil.rmtree(image_dir)
        ours, theirs = build_runs[-1], pipeline_runs[-1]
        print(f"run {attempt + 1}: pipeline {theirs.wall:.2f}s (cpu {theirs.cpu:.1f}s, {pipeline_size / MIB:.1f} MiB gz)  "
              f"build_image {ours.wall:.2f}s (cpu {ours.cpu:.1f}s, {image_size / MIB:.1f} MiB gz, "
              f"peak RSS {ours.peak_rss / MIB:.1f} MiB)")
    best_pipeline = min(run.wall for run in pipeline_runs)
    best_build = min(run.wall for run in build_runs)
    peak = max(run.peak_rss for run in build_runs)
    ratio = best_build / best_pipeline
    print(f"best pipeline (tar|tee sha512sum|pigz -6): {best_pipeline:.2f}s")
    print(f"best build_image (ACI + OCI layout):      {best_build:.2f}s")
    print(f"ratio ours/pipeline: {ratio:.2f} (goal <= 1.0: {'met' if ratio <= 1.0 else 'MISSED'})")
    print(f"peak RSS of build_image: {peak / MIB:.1f} MiB (goal < {RSS_GOAL_MIB} MiB: "
          f"{'met' if peak < RSS_GOAL_MIB * MIB else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="rootfs size in MB (default 200)")
    parser.add_argument("--files", type=int, default=3000, help="number of files (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender; the best counts (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("SRC", "IMAGE_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, metavar=("TREE", "SIZE_MB", "FILES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate_rootfs(Path(args.generate[0]), int(args.generate[1]), int(args.generate[2]))
        return
    if args.child:
        child_build(Path(args.child[0]), Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory(prefix="bench-image-") as workdir:
        run(args.size_mb, args.files, args.runs, Path(workdir))


if __name__ == "__main__":
    main()
