"""Several doit processes releasing overlapping instructions in one root."""

from __future__ import annotations

import collections
import fcntl
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import doit, snapshot
from instructing import PG, PG_PINNED, instruct, tip

IMAGES = ("api", "worker", "cron", "proxy")
PODS = {"backend": ("api", "worker", "cron"), "edge": ("proxy", "api"), "jobs": ("worker", "cron")}


def build_logging_root(root: Path) -> Path:
    """Images whose command logs each build to $BUILD_LOG, so double builds are seen."""
    folder = root / "shipyard" / "svc"
    folder.mkdir(parents=True)
    lines = ["images:"]
    for image in IMAGES:
        lines += [
            f"  {image}:",
            f"    command: [sh, -c, 'echo {image} >> $BUILD_LOG; mkdir -p $ROOTFS/bin && head -c 300000 /dev/zero > $ROOTFS/bin/{image}']",
            f"    app: {{exec: [/bin/{image}]}}",
        ]
    lines.append("pods:")
    for pod, images in PODS.items():
        lines += [f"  {pod}:", f"    images: [{', '.join(images)}]"]
    (folder / "build.yaml").write_text("\n".join(lines) + "\n")
    for channel in ("staging", "prod"):
        for pod in PODS:
            home = root / "channels" / channel / "svc" / pod
            home.mkdir(parents=True)
            for version in ("1.0.0", "1.1.0", "2.0.0"):
                (home / f"{version}.yaml").write_text(f"images: {{{', '.join(f'//svc:{i}: 1.0.0' for i in PODS[pod])}}}\n")
    (root / "dodo.py").write_text("from podrelease.tasks import *  # noqa: F401,F403\n")
    return root


def start(root: Path, log: Path, *targets: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "doit", *targets], cwd=root, env={**os.environ, "BUILD_LOG": str(log)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def released_tree(root: Path) -> dict:
    return {k: v for k, v in snapshot(root).items() if not k.startswith((".doit.db", ".podrelease"))}


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_runs_all_succeed_and_build_each_image_once(tmp_path, processes):
    log = tmp_path / "builds.log"
    root = build_logging_root(tmp_path / "root")
    targets = [
        (),
        ("release:prod/svc/backend/2.0.0", "release:staging/svc/edge/1.1.0"),
        ("release:staging/svc/backend/1.0.0", "release:prod/svc/jobs/1.0.0"),
        ("-n", "2", "-P", "thread"),
    ][:processes]
    runs = [start(root, log, *t) for t in targets]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
    assert collections.Counter(log.read_text().split()) == {image: 1 for image in IMAGES}


def test_concurrent_runs_leave_the_tree_a_single_run_leaves(tmp_path):
    log = tmp_path / "builds.log"
    single = build_logging_root(tmp_path / "single")
    assert start(single, log).wait(timeout=300) == 0
    shared = build_logging_root(tmp_path / "shared")
    runs = [start(shared, log), start(shared, log, "-n", "2", "-P", "thread"), start(shared, log)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
    assert released_tree(shared) == released_tree(single)


def test_a_lock_held_by_a_killed_process_does_not_block(tmp_path):
    root = build_logging_root(tmp_path / "root")
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from podrelease.core import locks\n"
            "with locks.holding(Path(sys.argv[1]), 'image:svc/api/1.0.0'):\n"
            "    print('held', flush=True); time.sleep(600)\n"
        ), str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    run = start(root, tmp_path / "builds.log")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert (root / "images/svc/api/1.0.0/image.aci").is_file()
    assert not os.listdir(root / "images/svc/api")[0].startswith(".tmp")


# ---------------------------------------------------------------- tip in parallel runs (moved from test_review_release.py)


def test_parallel_processes_move_tip_to_a_version_released_in_the_same_run(example):
    doit(example, check=True)
    instruct(example, "2.0.0", PG_PINNED, home=PG)
    doit(example, "-n", "2", check=True)
    assert tip(example, PG) == "2.0.0"


def test_parallel_threads_move_tip_past_a_lower_version_released_alongside(example):
    """1.9.5 is checked while 2.0.0 is still being assembled; 2.0.0 must still become tip.

    The test holds 2.0.0's pod lock until doit has decided about 1.9.5, so
    the order is certain without any timing.
    """
    doit(example, check=True)
    instruct(example, "1.9.5", PG_PINNED, home=PG)
    instruct(example, "2.0.0", PG_PINNED, home=PG)
    locks = example / ".podrelease" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(b"pod:prod/infra/db/pg/2.0.0").hexdigest()[:32] + ".lock"
    fd = os.open(locks / name, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    run = subprocess.Popen(
        [sys.executable, "-m", "doit", "-n", "2", "-P", "thread"], cwd=example, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    safety = threading.Timer(300, run.kill)  # only so a broken build cannot hang the suite
    safety.start()
    try:
        for line in run.stdout:
            if "release:prod/infra/db/pg/1.9.5" in line:
                break  # decided about 1.9.5 while 2.0.0 waits for its lock
        os.close(fd)
        run.stdout.read()
        assert run.wait() == 0
    finally:
        safety.cancel()
        run.kill()
    assert tip(example, PG) == "2.0.0"
