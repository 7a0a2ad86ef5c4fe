"""Hostile release roots through the real `doit`: bounded, one line per mistake, nothing written.

The data-driven cases are in tests/corpus/; these are the ones that need more
than an overlay (a release that must succeed, a file outside the root).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle
from podrelease.core.errors import UserError

from hostile import closed_directory, doit, onboard
from instructing import FRONTEND, instruct
from podfactory import ReleaseRoot, standard_pod

RELEASE_MEMORY = 2 << 30  # a release that succeeds builds images on a few threads


def test_a_240_character_version_releases_and_deploys(example, tmp_path):
    # Its temporaries (`.tmp-<name>-<pid>-<random>`) were longer than a file name may be.
    version = "1." + "0" * 238
    instruct(example, version)
    first = doit(example, memory=RELEASE_MEMORY, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    again = doit(example, memory=RELEASE_MEMORY, timeout=600)
    assert again.returncode == 0 and "Traceback" not in again.stderr
    pod_dir = example / FRONTEND / version
    assert (pod_dir / "pod.json").is_file()
    deployed = onboard(tmp_path / "ops", "deploy", str(pod_dir))
    assert deployed.returncode == 0, deployed.stderr[-2000:]


def test_control_characters_in_file_names_reach_the_terminal_escaped(example):
    home = example / FRONTEND
    (home / "1.2\x1b[2J\x1b[H\n.yaml").write_text((home / "1.1.0.yaml").read_text())
    result = doit(example)
    assert result.returncode != 0
    assert "\x1b" not in result.stderr + result.stdout
    assert "1.2\\x1b[2J\\x1b[H\\x0a.yaml: bad instruction path" in result.stderr


# -- private files made public ---------------------------------------------------------

STATIC = Path("volumes/web/static/1.0.0")


def refused_in_one_line(root: Path) -> str:
    """`doit` in `root` fails with one line, and the pod using the volume is not released."""
    result = doit(root)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert not (root / FRONTEND / "1.1.0").exists()
    return lines[0]


@pytest.fixture
def closed(tmp_path) -> Path:
    """A directory closed to others, outside the release root, holding a readable `secret`."""
    return closed_directory(tmp_path / "closed", "password=hunter2\n")


def test_a_volume_file_linked_to_a_file_outside_the_release_root_is_refused(example, closed):
    (example / STATIC / "secret").symlink_to(closed / "secret")
    line = refused_in_one_line(example)
    assert line.startswith(f"{STATIC}/secret: a symbolic link leading out of its volume")


def test_a_private_volume_file_is_refused(example):
    (example / STATIC / "notes").write_text("private\n")
    os.chmod(example / STATIC / "notes", 0o600)
    line = refused_in_one_line(example)
    assert line.startswith(f"{STATIC}/notes: not readable by everyone (mode 0600)")


def test_a_bundle_does_not_take_a_volume_file_kept_in_a_closed_directory(tmp_path, closed):
    # The file has the content pod.json pins: only the check of the path makes the difference.
    release = ReleaseRoot(tmp_path / "release")
    pod_dir = standard_pod(release)
    volume_file = release.root / "volumes/web/static/1.0.0/assets.tar.gz"
    hidden = closed / "assets.tar.gz"
    shutil.move(volume_file, hidden)
    os.chmod(hidden, 0o644)
    volume_file.symlink_to(hidden)
    with pytest.raises(UserError, match="assets.tar.gz: not readable by everyone: the directory .*closed"):
        write_bundle(pod_dir, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
