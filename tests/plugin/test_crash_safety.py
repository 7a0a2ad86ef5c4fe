"""SIGKILL a real release at random moments: the root stays consistent.

After every kill: no partial artifact under a real name, every tip
resolves. After the run that completes: `doit verify` is clean, no
temporary is left, and the tree is byte-identical to a release that was
never interrupted.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import doit, snapshot
from generate import generate

pytestmark = pytest.mark.slow  # 50+ SIGKILLs of real releases

TARGET_KILLS = 50
SEED = 20261126


def synthetic_root(path: Path) -> Path:
    """Several label paths, pods, channels and shared image versions."""
    return generate(path, instructions=48, channels=3, versions=4, image_versions=2)


def released_tree(root: Path) -> dict:
    return {k: v for k, v in snapshot(root).items() if not k.startswith((".doit.db", ".podrelease"))}


def artifact_dirs(root: Path, top: str, marker: str) -> list[Path]:
    return [p.parent for p in (root / top).rglob(marker) if not any(part.startswith(".") for part in p.relative_to(root).parts)] if (root / top).exists() else []


def assert_consistent(root: Path) -> None:
    """What a reader may see at any moment: whole artifacts or none."""
    for image in (root / "images").rglob("*") if (root / "images").exists() else ():
        if image.is_dir() and not image.name.startswith(".") and any((image / n).exists() for n in ("image.aci", "sha512")):
            digest = (image / "sha512").read_text()
            assert re.fullmatch(r"[0-9a-f]{128}\n", digest), image
            with gzip.open(image / "image.aci") as tar:
                assert hashlib.sha512(tar.read()).hexdigest() == digest.strip(), image
    for pod in artifact_dirs(root, "channels", "pod.json"):
        document = json.loads((pod / "pod.json").read_text())
        for entry in document["images"]:
            assert (pod / entry["path"]).is_file(), pod
        for link in pod.iterdir():
            assert not link.is_symlink() or link.exists(), link
    for tip in (root / "channels").rglob("tip"):
        assert (tip / "pod.json").is_file(), tip


def pending_stage(root: Path, reference: Path) -> str:
    """Which step of the release the kill interrupted, judged by what is still missing."""
    if len(artifact_dirs(root, "images", "sha512")) < len(artifact_dirs(reference, "images", "sha512")):
        return "image build"
    if len(artifact_dirs(root, "channels", "pod.json")) < len(artifact_dirs(reference, "channels", "pod.json")):
        return "pod assembly"
    return "tip update"


def kill_at_random(root: Path, delay: float) -> bool:
    """Start a release and SIGKILL its whole process group after `delay`; True if killed."""
    run = subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if run.poll() is not None:
        return False
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    return True


def test_sigkill_at_random_moments_leaves_a_consistent_root(tmp_path):
    reference = synthetic_root(tmp_path / "reference")
    started = time.perf_counter()
    doit(reference, check=True)
    duration = time.perf_counter() - started
    expected = released_tree(reference)
    probe = synthetic_root(tmp_path / "probe")
    doit(probe, "pod", check=True)
    started = time.perf_counter()
    doit(probe, check=True)
    tips_only = time.perf_counter() - started
    rng = random.Random(SEED)
    kills, stages, rounds = 0, collections.Counter(), 0
    while kills < TARGET_KILLS:
        rounds += 1
        assert rounds <= 40, f"only {kills} kills landed in 40 rounds"
        root = synthetic_root(tmp_path / f"round{rounds}")
        window = duration
        if rounds % 3 == 0:
            # tip updates are the shortest step: one round in three leaves only them to do
            doit(root, "pod", check=True)
            window = tips_only
        for _ in range(8):
            stage = pending_stage(root, reference)
            if not kill_at_random(root, rng.uniform(0.05, window)):
                break
            kills += 1
            stages[stage] += 1
            assert_consistent(root)
        doit(root, check=True)
        assert_consistent(root)
        assert doit(root, "verify").returncode == 0
        assert list(root.rglob(".tmp-*")) == []
        assert released_tree(root) == expected
    print(f"\n{kills} kills over {rounds} rounds: {dict(stages)}")
    assert set(stages) == {"image build", "pod assembly", "tip update"}, stages
