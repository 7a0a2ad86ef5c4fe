"""Parsed instructions remembered between runs: a shortcut that is never wrong."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest

from conftest import copy_example, doit, executed, snapshot

CACHE = Path(".podrelease/instructions.pickle")


@pytest.fixture
def settled(tmp_path) -> Path:
    """The example with files older than the cache's 2 s racy window, and a saved cache."""
    root = copy_example(tmp_path / "root")
    time.sleep(2.1)  # ctime can't be set back: wait until the files are settled
    doit(root, "list", check=True)
    return root


def remembered(root: Path) -> dict:
    with open(root / CACHE, "rb") as f:
        return pickle.load(f)[1]


def test_unchanged_instructions_are_remembered(settled):
    assert len(remembered(settled)) == 6


def test_an_edited_instruction_is_read_again(settled):
    instruction = settled / "channels/prod/infra/db/pg/1.9.0.yaml"
    instruction.write_text(instruction.read_text() + "parameters: {args: [--fresh]}\n")
    doit(settled, "release:prod/infra/db/pg/1.9.0", check=True)
    pod = json.loads((settled / "channels/prod/infra/db/pg/1.9.0/pod.json").read_text())
    assert pod["manifest"]["apps"][0]["app"]["exec"][-1] == "--fresh"


def test_an_instruction_broken_after_caching_is_reported(settled):
    (settled / "channels/prod/infra/db/pg/1.9.0.yaml").write_text("imagez: {}\n")
    result = doit(settled)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("channels/prod/infra/db/pg/1.9.0.yaml:1: unknown key 'imagez'")


def test_a_removed_instruction_is_forgotten(settled):
    (settled / "channels/prod/infra/db/pg/1.9.0.yaml").unlink()
    result = doit(settled, "list", check=True)
    assert "release:prod/infra/db/pg/1.9.0" not in result.stdout


def test_a_corrupt_cache_is_ignored(settled):
    (settled / CACHE).write_bytes(b"not a pickle")
    doit(settled, check=True)
    assert executed(doit(settled, check=True)) == []


def test_a_run_that_reports_a_mistake_writes_no_cache(tmp_path):
    root = copy_example(tmp_path / "root")
    (root / "channels/prod/web/frontend/1.1.0.yaml").write_text("imagez: {}\n")
    time.sleep(2.1)
    before = snapshot(root)
    assert doit(root).returncode != 0
    assert snapshot(root) == before


def test_a_save_killed_halfway_leaves_a_temporary_the_next_save_removes(settled):
    leftover = settled / ".podrelease" / ".tmp-instructions.pickle-999999-dead"
    leftover.write_bytes(b"half")
    (settled / CACHE).unlink()
    doit(settled, "list", check=True)
    assert not leftover.exists()
    assert len(remembered(settled)) == 6


PLAN_CACHE = Path(".podrelease/plan.pickle")


def indexed(root: Path) -> list[str]:
    with open(root / PLAN_CACHE, "rb") as f:
        return [name for name, _, _ in pickle.load(f)[1][1].releases]


def test_the_plan_index_is_remembered_for_settled_files(settled):
    assert "prod/web/frontend/1.1.0" in indexed(settled)


def test_an_added_instruction_is_planned_although_the_index_was_remembered(settled):
    new = settled / "channels/prod/web/frontend/1.4.0.yaml"
    new.write_text((settled / "channels/prod/web/frontend/1.1.0.yaml").read_text())
    result = doit(settled, "release:prod/web/frontend/1.4.0", check=True)
    assert (settled / "channels/prod/web/frontend/1.4.0/pod.json").is_file(), result.stdout


def test_a_build_file_broken_after_the_index_was_remembered_is_reported(settled):
    build = settled / "shipyard/web/build.yaml"
    build.write_text(build.read_text() + "bogus: 1\n")
    result = doit(settled)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("shipyard/web/build.yaml:")
