"""podrelease's task loader (doit's TaskLoader2 seam), in-process and as the `podrelease` LOADER."""

from __future__ import annotations

import os

from doit.doit_cmd import DoitMain

from podrelease.model.layout import ReleaseRoot
from podrelease.plugin.loader import ReleaseLoader

from conftest import doit


def test_tasks_are_generated_in_process(example, capsys, monkeypatch):
    monkeypatch.chdir(example)
    assert DoitMain(ReleaseLoader(ReleaseRoot(example))).run(["list", "--all"]) == 0
    listed = capsys.readouterr().out
    assert "release:prod/web/frontend/1.1.0" in listed
    assert "image:base/busybox/1.0.0" in listed


def test_a_root_naming_the_loader_releases_without_a_dodo_file(example):
    os.unlink(example / "dodo.py")
    (example / "pyproject.toml").write_text('[tool.doit]\nloader = "podrelease"\n')
    doit(example, check=True)
    assert (example / "channels/prod/web/frontend/1.1.0/pod.json").is_file()
    again = doit(example, check=True)
    assert not [line for line in again.stdout.splitlines() if line.startswith(".  ")]


def test_a_mistake_stops_the_loader_before_doit_writes_anything(example):
    os.unlink(example / "dodo.py")
    (example / "pyproject.toml").write_text('[tool.doit]\nloader = "podrelease"\n')
    (example / "channels/prod/web/frontend/1.1.0.yaml").write_text("imagez: {}\n")
    result = doit(example)
    assert result.returncode == 1
    assert result.stderr.startswith("channels/prod/web/frontend/1.1.0.yaml:1: unknown key 'imagez'")
    assert not (example / ".doit.db").exists()
