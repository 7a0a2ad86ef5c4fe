"""`doit verify` recomputes each released pod's manifest from its image, pod rule and channel parameters."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import doit

STAGING_POD = "channels/staging/web/frontend/1.2.0"


@pytest.fixture
def root(released_example: Path, tmp_path: Path) -> Path:
    """A private copy of the released example (mtimes kept: its pod.json files are newer than its rules)."""
    copy = tmp_path / "root"
    shutil.copytree(released_example, copy, symlinks=True)
    return copy


def edit_manifest(root: Path, change) -> None:
    pod_json = root / STAGING_POD / "pod.json"
    document = json.loads(pod_json.read_text())
    change({a["name"]: a for a in document["manifest"]["apps"]}, document["manifest"])
    pod_json.write_text(json.dumps(document, indent=2) + "\n")


def problem_lines(root: Path, *args: str) -> tuple[int, list[str]]:
    result = doit(root, "verify", *args)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()[:-1]


def test_the_released_example_agrees_with_its_recomputed_manifests(released_example):
    assert problem_lines(released_example) == (0, [])


def test_an_edited_exec_is_an_error(root):
    edit_manifest(root, lambda apps, _: apps["frontend"]["app"]["exec"].__setitem__(0, "/bin/sh"))
    status, lines = problem_lines(root)
    assert status == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{STAGING_POD}/pod.json: manifest.apps[0].app.exec is ['/bin/sh', ")
    assert "but its image, pod rule and channel parameters give ['/opt/frontend/bin/serve', " in lines[0]


def test_an_appended_argument_is_an_error(root):
    edit_manifest(root, lambda apps, _: apps["frontend"]["app"]["exec"].append("--debug-shell"))
    status, lines = problem_lines(root)
    assert status == 1
    assert [line for line in lines if line.startswith(f"{STAGING_POD}/pod.json: manifest.apps[0].app.exec is ")]


def test_an_edited_environment_is_an_error(root):
    def change(apps, _):
        apps["logship"]["app"]["environment"].append({"name": "LD_PRELOAD", "value": "/tmp/evil.so"})
    edit_manifest(root, change)
    status, lines = problem_lines(root)
    assert status == 1
    assert lines == [line for line in lines if "manifest.apps[1].app.environment is " in line] and len(lines) == 1


def test_an_edited_user_is_an_error(root):
    edit_manifest(root, lambda apps, _: apps["frontend"]["app"].__setitem__("user", "4242"))
    status, lines = problem_lines(root)
    assert status == 1 and len(lines) == 1 and "manifest.apps[0].app.user is '4242'" in lines[0]


def test_a_writable_volume_made_of_a_read_only_one_is_an_error(root):
    edit_manifest(root, lambda _, manifest: manifest["volumes"][0].__setitem__("readOnly", False))
    status, lines = problem_lines(root)
    assert status == 1 and len(lines) == 1 and "manifest.volumes is " in lines[0]


def test_pod_rule_args_changed_after_the_release_are_a_warning(root):
    build_file = root / "shipyard/web/build.yaml"
    build_file.write_text(build_file.read_text().replace('args: [--port, "8080"]', 'args: [--port, "9090"]'))
    later = time.time() + 5
    os.utime(build_file, (later, later))
    status, lines = problem_lines(root)
    assert status == 0  # a warning: released pods keep what their rule said then
    manifest_lines = [line for line in lines if "manifest.apps" in line]
    assert manifest_lines and all("warning: " in line and "changed since the release" in line for line in manifest_lines)
