"""Shared fixtures: temporary release roots driven by the real doit command."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import podfactory

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SOURCES = ("shipyard", "channels", "volumes")
# The ops-onboard tests written before `deploy` ran pods lay pods out by hand (no OCI
# layouts) on hosts that need no podman: every ops-onboard they start installs only
# (see `ops-onboard --help`). Tests that run pods (tests/deploy/test_run.py) unset it.
os.environ.setdefault("OPS_ONBOARD_NO_START", "1")


def doit(root: Path, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real `doit` command line in a release root."""
    result = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def executed(result: subprocess.CompletedProcess) -> list[str]:
    """Tasks doit ran (its `.  name` lines), as opposed to up-to-date (`--`)."""
    return [line[3:] for line in result.stdout.splitlines() if line.startswith(".  ")]


def copy_example(destination: Path) -> Path:
    """The repo's example release root (sources only) in a fresh folder."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_SOURCES:
        shutil.copytree(REPO / name, destination / name, symlinks=True, ignore=_built_artifacts)
    shutil.copy(REPO / "dodo.py", destination / "dodo.py")
    return destination


def _built_artifacts(folder: str, names: list[str]) -> set[str]:
    """Leave out pod directories and tips a local run of the example made."""
    present = set(names)
    return {n for n in names if n == "tip" or f"{n}.yaml" in present or n.startswith(".")}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind and content: compare to prove nothing changed."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                state[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                state[rel] = ("dir", oct(full.stat().st_mode & 0o7777))
            else:
                state[rel] = ("file", oct(full.stat().st_mode & 0o7777), hashlib.sha256(full.read_bytes()).hexdigest())
    return state


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "root")


@pytest.fixture(scope="session")
def released_example(tmp_path_factory) -> Path:
    """The example, released once for tests that only read it."""
    root = copy_example(tmp_path_factory.mktemp("released") / "root")
    doit(root, check=True)
    return root


@pytest.fixture
def release(tmp_path: Path) -> podfactory.ReleaseRoot:
    """An empty release root for tests that lay pods out by hand (tests/podfactory.py)."""
    return podfactory.ReleaseRoot(tmp_path / "release")


@pytest.fixture
def ops(tmp_path: Path) -> Path:
    """The --root of an ops-onboard under test."""
    return tmp_path / "ops"


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real docker-registry on 127.0.0.1 with htpasswd auth, for every registry test (tests/registryhelpers.py)."""
    import registryhelpers

    served = registryhelpers.Registry(tmp_path_factory.mktemp("registry"))
    yield served
    served.stop()
