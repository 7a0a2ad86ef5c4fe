"""podrelease's task loader (doit's TaskLoader2 seam), in-process and as the `podrelease` LOADER."""

from __future__ import annotations

import gc
import os
import time

import pytest
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


def settled_release(example) -> None:
    """Release the example, let its files age past the caches' racy window, and save the caches."""
    doit(example, check=True)
    time.sleep(2.1)  # ctime can't be set back: wait until the files are settled
    doit(example, check=True)


def test_a_noop_run_makes_release_tasks_only_and_reads_no_instruction(example, monkeypatch):
    settled_release(example)
    monkeypatch.chdir(example)
    loader = ReleaseLoader(ReleaseRoot(example))
    assert DoitMain(loader).run([]) == 0
    assert loader.release.needs == {"_volumes": None, "release": None}
    assert loader.release.planned is None  # the plan's index came from the plan cache
    assert gc.isenabled()  # off only while loading


def test_a_task_named_on_the_command_line_gets_what_it_depends_on(example, monkeypatch):
    monkeypatch.chdir(example)
    loader = ReleaseLoader(ReleaseRoot(example))
    assert DoitMain(loader).run(["release:prod/web/frontend/1.1.0"]) == 0
    needs = loader.release.needs
    assert needs["release"] == {"prod/web/frontend/1.1.0"} and needs["pod"] == {"prod/web/frontend/1.1.0"}
    assert "bundle" not in needs and "tip" not in needs
    assert (example / "channels/prod/web/frontend/1.1.0/pod.json").is_file()


def test_other_commands_and_patterns_get_every_task(example, monkeypatch, capsys):
    monkeypatch.chdir(example)
    loader = ReleaseLoader(ReleaseRoot(example))
    assert DoitMain(loader).run(["info", "image:base/busybox/1.0.0"]) in (0, 1)
    assert set(loader.release.needs) == {"image"}
    for args in (["list", "--all"], ["release:prod/*"], ["forget"]):
        loader = ReleaseLoader(ReleaseRoot(example))
        DoitMain(loader).run(args)
        assert loader.release.needs is None, args
    capsys.readouterr()


def test_the_dodo_file_creators_find_the_command(example, monkeypatch):
    from doit.cmd_base import DodoTaskLoader

    from podrelease import tasks

    settled_release(example)
    monkeypatch.chdir(example)
    tasks._planned.cache_clear()
    tasks._release.cache_clear()
    try:
        assert DoitMain(DodoTaskLoader()).run([]) == 0
        assert tasks._release().needs == {"_volumes": None, "release": None}
    finally:
        tasks._planned.cache_clear()
        tasks._release.cache_clear()


def test_a_root_that_changes_while_it_is_read_is_refused_rather_than_planned_wrong(example):
    from podrelease.core.errors import UserError
    from podrelease.plugin.session import loading_done, read_root

    settled_release(example)
    try:
        read = read_root(ReleaseRoot(example))
        instruction = example / "channels/staging/web/frontend/1.2.0.yaml"
        instruction.write_text(instruction.read_text() + "yanked: true\n")
        with pytest.raises(UserError, match="changed while doit was reading it"):
            read.planner()
    finally:
        loading_done()
