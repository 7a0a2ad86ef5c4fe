"""Benchmark: a registry as the shared release store, against a real docker-registry on 127.0.0.1.

1. Fresh-checkout CI run with a warm registry vs a full rebuild, for a root
   of IMAGES images of about SIZE MB each (one pod each). The full rebuild
   is `doit` in a fresh checkout without a registry; the warm run is `doit`
   in a fresh checkout whose registry already holds every release (pushed
   by an earlier runner). Goal: ratio <= 0.15.
2. Pushing and restoring one image of about BIG MB vs `skopeo copy` of the
   same OCI layout to and from a registry (each contender's own, started
   empty). podrelease moves more bytes than skopeo does: `image.aci`
   (the ACI companion) travels beside the OCI image. Both the throughput
   (bytes moved per second, ours over skopeo's) and the time ratio per
   image are printed. Goal: throughput >= 0.9x skopeo's.

Each contender runs in turn, best of RUNS, all in the same run of this
script, so the ratios hold on a shared, noisy machine.

    python bench/bench_registry.py                   # 10 x 20 MB, and 200 MB
    python bench/bench_registry.py --size-mb 2 --big-mb 20 --runs 1   # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_image_build import generate_rootfs  # noqa: E402

from podrelease.registry.references import parse_registry  # noqa: E402
from podrelease.registry.store import RegistryStore  # noqa: E402

from registryhelpers import Registry  # noqa: E402


def make_root(root: Path, images: int, size_mb: int, files: int, seed: int) -> None:
    """A release root of `images` images, each copying its own generated tree, one pod each."""
    (root / "shipyard" / "app").mkdir(parents=True)
    rules = ["images:"]
    for i in range(images):
        generate_rootfs(root / "shipyard" / "app" / f"t{i}", size_mb, files=files, seed=seed + i)
        (root / "shipyard" / "app" / f"t{i}" / "run").write_text("#!/bin/sh\n")
        rules += [f"  i{i}:", "    rootfs:", f"      - {{src: t{i}/, dst: /data/}}",
                  "    app: {exec: [/data/run]}"]
    rules.append("pods:")
    for i in range(images):
        rules += [f"  p{i}:", f"    images: [//app:i{i}]"]
        home = root / "channels" / "staging" / "app" / f"p{i}"
        home.mkdir(parents=True)
        (home / "1.0.0.yaml").write_text(f"images: {{//app:i{i}: 1.0.0}}\n")
    (root / "shipyard" / "app" / "build.yaml").write_text("\n".join(rules) + "\n")
    (root / "dodo.py").write_text("from podrelease.tasks import *\n")


def checkout(sources: Path, to: Path) -> Path:
    shutil.copytree(sources, to, symlinks=True)
    return to


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def fresh_checkout(work: Path, registry: Registry, images: int, size_mb: int, runs: int) -> None:
    sources = work / "sources"
    make_root(sources, images, size_mb, files=40, seed=1000)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    doit = [sys.executable, "-m", "doit"]
    timed(doit, checkout(sources, work / "warmup"), registry.env(prefix))  # the runner that fills the registry
    full, warm = [], []
    for run in range(runs):
        full.append(timed(doit, checkout(sources, work / f"full{run}"), {"PODRELEASE_REGISTRY": ""}))
        warm.append(timed(doit, checkout(sources, work / f"warm{run}"), registry.env(prefix)))
        shutil.rmtree(work / f"full{run}")
    print(f"fresh checkout, {images} images of ~{size_mb} MB: full rebuild {min(full):.2f} s, "
          f"warm registry {min(warm):.2f} s, ratio {min(warm) / min(full):.3f}x (goal <= 0.15x)")


def blob_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def push_restore(work: Path, big_mb: int, runs: int) -> None:
    """Each contender pushes into a registry of its own, started empty for the run: every blob really
    travels (skopeo would otherwise mount blobs it remembers pushing, and a push would cost nothing)."""
    sources = work / "bigroot"
    make_root(sources, 1, big_mb, files=200, seed=7)
    subprocess.run([sys.executable, "-m", "doit", "image:app/i0/1.0.0"], cwd=sources, check=True,
                   env={**os.environ, "PODRELEASE_REGISTRY": ""}, stdout=subprocess.DEVNULL)
    image_dir = sources / "images" / "app" / "i0" / "1.0.0"
    layout = image_dir / "oci"
    image_bytes = blob_bytes(layout / "blobs")
    ours_bytes = image_bytes + sum((image_dir / name).stat().st_size for name in ("image.aci", "sha512", "build.json"))
    ours, theirs = [], []
    for run in range(runs):
        for contender, times in (("ours", ours), ("skopeo", theirs)):
            (work / f"registry-{contender}{run}").mkdir()
            registry = Registry(work / f"registry-{contender}{run}")
            os.environ.update({k: v for k, v in registry.env("unused").items() if k != "PODRELEASE_REGISTRY"})
            try:
                times.append(push_and_pull(contender, registry, image_dir, work / f"back-{contender}{run}"))
            finally:
                registry.stop()
                shutil.rmtree(work / f"registry-{contender}{run}")
                shutil.rmtree(work / f"back-{contender}{run}", ignore_errors=True)
    best_ours, best_theirs = min(ours), min(theirs)
    throughput = (ours_bytes / best_ours) / (image_bytes / best_theirs)
    print(f"push + restore of one ~{big_mb} MB image: podrelease {best_ours:.2f} s moving {ours_bytes / 1e6:.0f} MB "
          f"each way, skopeo copy {best_theirs:.2f} s moving {image_bytes / 1e6:.0f} MB; throughput (bytes per second) "
          f"{throughput:.2f}x of skopeo's (goal >= 0.9x); time per image {best_theirs / best_ours:.2f}x")


def push_and_pull(contender: str, registry: Registry, image_dir: Path, back: Path) -> float:
    """Seconds to push the image to `registry` and bring it back to `back`."""
    repository = f"{registry.host}/bench/images/app/i0"
    start = time.perf_counter()
    if contender == "ours":
        store = RegistryStore(parse_registry(f"{registry.host}/bench"))
        store.push_image(image_dir, repository, "1.0.0")
        store.restore_image(repository, "1.0.0", back)
    else:
        layout = image_dir / "oci"
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"oci:{layout}:1.0.0", f"docker://{repository}:1.0.0")
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"docker://{repository}:1.0.0", f"oci:{back}:1.0.0")
    return time.perf_counter() - start


def compile_podrelease() -> None:
    """Bytecode for podrelease, as an installed package has: with PYTHONDONTWRITEBYTECODE set (as on
    these machines) an editable install would otherwise compile ~70 modules in every contender's run."""
    import compileall

    import podrelease

    compileall.compile_dir(str(Path(podrelease.__file__).parent), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    compile_podrelease()
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        registry = Registry(work / "registry")
        try:
            fresh_checkout(work, registry, args.images, args.size_mb, args.runs)
        finally:
            registry.stop()
        push_restore(work, args.big_mb, args.runs)


if __name__ == "__main__":
    main()
