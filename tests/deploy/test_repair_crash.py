"""SIGKILL of a repairing `ops-onboard deploy` after each step that changes the live tree.

A repair deploy installs again a version whose installed image and files were
damaged: it replaces the image directory and the version directory that
`current` names. Whatever step it is killed after, `current` still names a
whole version whose images are all there (damaged or new), and the next
deploy finishes the repair.

The kill is exact, not timed: the command runs in a Python that wraps
`os.rename`, `os.replace` and the exchange of directories, and SIGKILLs
itself right after the N-th of them that touches a name outside the
deploy's staging directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle

from podfactory import ReleaseRoot, standard_pod

KILLER = r"""
import os, signal, sys
from podrelease.deploy import install

left = int(os.environ["KILL_AFTER"])

def live(*paths):
    return any("/.tmp-" not in str(p) for p in paths)

def counted(real):
    def step(a, b, *args, **kwargs):
        global left
        result = real(a, b, *args, **kwargs)
        if live(a, b):
            left -= 1
            if left == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return result
    return step

os.rename = counted(os.rename)
os.replace = counted(os.replace)
if hasattr(install, "exchange"):
    install.exchange = counted(install.exchange)
from podrelease.deploy.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    release = ReleaseRoot(tmp_path_factory.mktemp("repair") / "release")
    where = release.root / "bundle"
    write_bundle(standard_pod(release), where)
    return where


def onboard(ops: Path, *args: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILLER, "--root", str(ops), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "KILL_AFTER": str(kill_after)})


def damage(ops: Path) -> None:
    """Flip a byte of the installed image and change a file of the installed version."""
    (aci,) = ops.glob("images/*/image.aci")
    data = bytearray(aci.read_bytes())
    data[len(data) // 2] ^= 0xFF
    aci.write_bytes(bytes(data))
    (ops / "pods/web/frontend/1.2.0/files/frontend.service").write_text("tampered\n")


def assert_current_is_whole(ops: Path) -> None:
    pod_dir = ops / "pods/web/frontend"
    version = pod_dir / os.readlink(pod_dir / "current")
    assert (version / "installed.json").is_file(), "current names a version that is gone"
    assert (version / "pod.json").is_file()
    for link in (version / "images").iterdir():
        assert (link / "image.aci").is_file(), f"current's image {link.name} is gone"


@pytest.mark.parametrize("kill_after", [1, 2, 3, 4, 5])
def test_a_repair_killed_after_any_step_leaves_current_whole_and_the_next_deploy_repairs(bundle, tmp_path, kill_after):
    ops = tmp_path / "ops"
    assert onboard(ops, "deploy", str(bundle)).returncode == 0
    damage(ops)
    killed = onboard(ops, "deploy", str(bundle), kill_after=kill_after)
    assert killed.returncode in (0, -signal.SIGKILL), killed.stderr
    assert_current_is_whole(ops)
    again = onboard(ops, "deploy", str(bundle))
    assert again.returncode == 0, again.stderr
    verified = onboard(ops, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
