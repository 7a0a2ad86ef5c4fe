"""Hostile release roots through the real `doit`: bounded, one line per mistake, nothing written.

The data-driven cases are in tests/corpus/; these are the ones that need more
than an overlay (a release that must succeed, a file outside the root).
"""

from __future__ import annotations

from hostile import doit, onboard
from instructing import FRONTEND, instruct

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
