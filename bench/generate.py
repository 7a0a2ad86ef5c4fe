"""Generate a synthetic release root: many pods, versions and channels.

Used by the benchmarks and the crash and concurrency tests. Images are tiny
(a file or two) so that the cost measured is podrelease's, not gzip's.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import tarfile
from pathlib import Path

DODO = "from podrelease.tasks import *  # noqa: F401,F403\n"


def volume_tarball(path: Path, text: str) -> None:
    """A deterministic .tar.gz: same text, same bytes (gzip mtime 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("data/README")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def generate(root: Path, instructions: int, channels: int = 2, versions: int = 10, image_versions: int = 3) -> Path:
    """`instructions` = label paths x pods x channels x versions; returns root."""
    pods_needed = max(1, instructions // (channels * versions))
    root.mkdir(parents=True, exist_ok=True)
    (root / "dodo.py").write_text(DODO)
    made = 0
    for index in range(pods_needed):
        label_path = f"team{index // 10}/svc{index % 10}" if index % 2 else f"team{index // 10}"
        name = f"pod{index}"
        folder = root / "shipyard" / label_path
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.sh").write_text(f"#!/bin/sh\necho {name}\n")
        os.chmod(folder / f"{name}.sh", 0o755)
        build = folder / "build.yaml"
        text = build.read_text() if build.exists() else "images: {}\npods: {}\n"
        images, pods = text.split("pods:", 1)
        images = images.replace("images: {}\n", "images:\n")
        images += (
            f"  {name}:\n"
            f"    rootfs: [{{src: {name}.sh, dst: /bin/{name}}}]\n"
            f"    app: {{exec: [/bin/{name}], environment: {{POD: {name}}}}}\n"
        )
        pods = pods.replace(" {}\n", "\n")
        pods += (
            f"  {name}:\n"
            f"    images: [{name}]\n"
            f"    volumes: [{{name: data, label: //{label_path}:{name}-data, path: /data}}]\n"
            f"    args: [--name, {name}]\n"
        )
        build.write_text(images + "pods:" + pods)
        volume = root / "volumes" / label_path / f"{name}-data" / "1.0.0"
        volume.mkdir(parents=True, exist_ok=True)
        volume_tarball(volume / "data.tar.gz", f"{name}\n")
        for channel in range(channels):
            home = root / "channels" / f"ch{channel}" / label_path / name
            home.mkdir(parents=True, exist_ok=True)
            for version in range(versions):
                if made == instructions:
                    return root
                image_version = f"1.{version % image_versions}.0"
                (home / f"1.{version}.0.yaml").write_text(
                    f"revision: r{version}\n"
                    f"images: {{//{label_path}:{name}: {image_version}}}\n"
                    f"volumes: {{//{label_path}:{name}-data: 1.0.0}}\n"
                    + ("parameters: {args: [--verbose]}\n" if channel == 0 else "")
                )
                made += 1
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--instructions", type=int, default=200)
    args = parser.parse_args()
    generate(args.root, args.instructions)


if __name__ == "__main__":
    main()
