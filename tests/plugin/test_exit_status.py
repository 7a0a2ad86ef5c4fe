"""The exit status of a large `doit -n 2 -P thread` release (issue 13).

doit's default output capture swaps the process-wide sys.stdout/sys.stderr
around every python-action; worker threads restored each other's streams out
of order, sys.stderr became a chain of capture writers one link deeper per
race, and flushing it at interpreter exit overflowed the recursion limit:
exit status 120 and not a word on stderr. Only a root with thousands of
tasks grew the chain deep enough, so these roots are big (and slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generate import DODO, volume_tarball

INSTRUCTIONS = 12_000  # the smallest root that still exited 120 every time before the fix
PARALLEL = ("-n", "2", "-P", "thread")


def shared_images_root(root: Path, instructions: int, *, label_paths: int = 20, channels: int = 3,
                       broken_image: bool = False) -> Path:
    """The issue's shape: `label_paths` pods, each with two images of their own
    label path and the next one's (40 images for 20 label paths, shared by every
    version in every channel) and one volume; `instructions` spread over
    `channels`, each pinning both images and the volume.

    `broken_image` adds one more pod and instruction whose image's command exits 1.
    """
    root.mkdir(parents=True)
    (root / "dodo.py").write_text(DODO)
    paths = [f"team{i}" for i in range(label_paths)]
    for index, path in enumerate(paths):
        folder = root / "shipyard" / path
        folder.mkdir(parents=True)
        lines = ["images:"]
        for image in ("img0", "img1"):
            (folder / f"{image}.sh").write_text(f"#!/bin/sh\necho {path} {image}\n")
            lines += [
                f"  {image}:",
                f"    rootfs: [{{src: {image}.sh, dst: /bin/{image}, mode: '0755'}}]",
                f"    app: {{exec: [/bin/{image}]}}",
            ]
        lines += [
            "pods:",
            "  svc:",
            f"    images: [img0, //{paths[(index + 1) % len(paths)]}:img1]",
            f"    volumes: [{{name: data, label: //{path}:data, path: /data}}]",
        ]
        (folder / "build.yaml").write_text("\n".join(lines) + "\n")
        volume = root / "volumes" / path / "data" / "1.0.0"
        volume.mkdir(parents=True)
        volume_tarball(volume / "data.tar.gz", f"{path}\n")
    homes = [(channel, index) for channel in range(channels) for index in range(len(paths))]
    for number in range(instructions):
        channel, index = homes[number % len(homes)]
        path, other = paths[index], paths[(index + 1) % len(paths)]
        home = root / "channels" / f"ch{channel}" / path / "svc"
        home.mkdir(parents=True, exist_ok=True)
        (home / f"1.{number // len(homes)}.0.yaml").write_text(
            f"images: {{//{path}:img0: 1.0.0, //{other}:img1: 1.0.0}}\n"
            f"volumes: {{//{path}:data: 1.0.0}}\n"
        )
    if broken_image:
        folder = root / "shipyard" / "broken"
        folder.mkdir(parents=True)
        (folder / "build.yaml").write_text(
            "images:\n  fails: {command: [sh, -c, 'echo broken build; exit 1'], app: {exec: [/bin/true]}}\n"
            "pods:\n  svc: {images: [fails]}\n"
        )
        home = root / "channels" / "ch0" / "broken" / "svc"
        home.mkdir(parents=True)
        (home / "1.0.0.yaml").write_text("")
    return root


def doit_to_files(root: Path, *args: str) -> tuple[int, str, str]:
    """The real `doit` with stdout and stderr redirected to files (not pipes), as in the issue."""
    with open(root / "out.log", "w+") as out, open(root / "err.log", "w+") as err:
        status = subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=os.environ.copy(), timeout=1200).returncode
        out.seek(0)
        err.seek(0)
        return status, out.read(), err.read()


@pytest.mark.slow
def test_large_parallel_release_exits_0_with_nothing_on_stderr(tmp_path):
    root = shared_images_root(tmp_path / "root", INSTRUCTIONS)
    status, out, err = doit_to_files(root, *PARALLEL)
    assert (status, err) == (0, ""), out[-2000:]


@pytest.mark.slow
def test_large_parallel_release_with_a_failing_image_exits_with_doits_failure_status_not_120(tmp_path):
    root = shared_images_root(tmp_path / "root", INSTRUCTIONS, broken_image=True)
    # --continue: every other task still runs, as many as in the passing release
    status, out, err = doit_to_files(root, "--continue", *PARALLEL)
    assert status in (1, 2), err[-2000:]  # 1 a task failed, 2 doit reports its unmet dependents
    assert "broken build" in err, err[-2000:]
