"""`doit init` scaffolds a root that releases with plain `doit`; doit in a subfolder works on the enclosing root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_example, doit, snapshot


def onboard(ops: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(ops), *args],
                          capture_output=True, text=True, timeout=300)


def test_init_scaffolds_a_root_that_releases_with_plain_doit(tmp_path):
    result = doit(tmp_path, "init", "root", check=True)
    root = tmp_path / "root"
    assert result.stdout.splitlines()[-1] == "release root ready: cd root && doit"
    assert (root / "dodo.py").read_text().startswith("from podrelease.tasks import *")
    assert "/images/" in (root / ".gitignore").read_text().splitlines()
    released = doit(root, check=True)
    assert released.stdout.splitlines()[-1] == "1 image built, 1 pod assembled, 1 tip moved"
    pod = json.loads((root / "channels/staging/example/hello/1.0.0/pod.json").read_text())
    assert (pod["name"], pod["version"], pod["volumes"]) == ("//example:hello", "1.0.0", [])
    assert os.readlink(root / "channels/staging/example/hello/tip") == "1.0.0"
    assert doit(root, "verify", check=True).stdout.startswith("verify: 0 errors, 0 warnings")


def test_an_initialized_root_bundles_and_deploys(tmp_path, ops):
    doit(tmp_path, "init", "root", check=True)
    root = tmp_path / "root"
    doit(root, "bundle:staging/example/hello/1.0.0", check=True)
    deployed = onboard(ops, "deploy", "--no-start", str(root / "bundles/staging/example/hello/1.0.0"))
    assert deployed.returncode == 0, deployed.stderr
    assert "//example:hello 1.0.0" in onboard(ops, "list").stdout


def test_init_in_the_current_folder(tmp_path):
    doit(tmp_path, "init", check=True)
    assert (tmp_path / "shipyard/example/build.yaml").is_file()


def test_init_refuses_a_folder_that_is_already_a_root_and_writes_nothing(tmp_path):
    root = copy_example(tmp_path / "root")
    before = snapshot(root)
    result = doit(root, "init")
    assert result.returncode == 1
    assert result.stderr == f"doit init: {root}: already holds dodo.py, shipyard, channels, volumes: doit init writes only into a folder without them\n"
    assert snapshot(root) == before


def test_doit_in_a_subfolder_releases_the_enclosing_root(tmp_path):
    root = copy_example(tmp_path / "root")
    result = doit(root / "channels/prod/web", check=True)
    assert result.stdout.splitlines()[-1] == "8 images built, 6 pods assembled, 4 tips moved"
    assert (root / "channels/prod/web/frontend/1.1.0/pod.json").is_file()
    assert not (root / "channels/prod/web/.doit.db").exists()


def test_list_status_info_and_verify_in_a_subfolder_work_on_the_root(released_example):
    folder = released_example / "shipyard/web/app"
    assert "U release:prod/web/frontend/1.1.0" in doit(folder, "list", check=True).stdout
    assert doit(folder, "list", "--all", check=True).stdout
    assert json.loads(doit(folder, "status", "--json", "prod", check=True).stdout)["pods"]
    assert "release:prod/web/frontend/1.1.0" in doit(folder, "info", "release:prod/web/frontend/1.1.0", check=True).stdout
    assert doit(folder, "verify", check=True).stdout.startswith("verify: 0 errors")


def test_outside_any_root_doit_still_says_it_found_no_dodo_file(tmp_path):
    result = doit(tmp_path)
    assert result.returncode == 3
    assert "Could not find dodo file" in result.stderr
    assert "Traceback" not in result.stderr
