"""Assembling pods (podrelease.build.assembly), through the real doit command line."""

from __future__ import annotations

from conftest import doit, snapshot
from instructing import FRONTEND, failure_lines, instruct, tip

# ---------------------------------------------------------------- something in the way (moved from test_review_release.py)


def test_an_empty_directory_at_the_pod_path_is_replaced_by_the_pod(example):
    """A leftover `mkdir` must not pass for a released pod: doit used to succeed without writing pod.json."""
    doit(example, check=True)
    instruct(example, "1.3.0")
    (example / FRONTEND / "1.3.0").mkdir()
    doit(example, check=True)
    assert (example / FRONTEND / "1.3.0" / "pod.json").is_file()
    assert tip(example) == "1.3.0"


def test_a_non_empty_directory_without_pod_json_at_the_pod_path_is_one_line_error(example):
    doit(example, check=True)
    instruct(example, "1.3.0")
    stray = example / FRONTEND / "1.3.0"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine\n")
    before = snapshot(example / FRONTEND)
    result = doit(example)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("channels/prod/web/frontend/1.3.0/: "), lines
    assert "Traceback" not in result.stderr
    assert snapshot(example / FRONTEND) == before  # nothing half-written, the stray folder untouched


# ---------------------------------------------------------------- pod arguments


def test_pod_args_for_an_image_without_exec_are_one_line_error(example):
    build = example / "shipyard/infra/db/build.yaml"
    build.write_text(build.read_text().replace("exec: [/opt/pg/bin/pg-serve]", "user: \"0\"").replace("    images: [pg]", "    images: [pg]\n    args: [--fast]"))
    result = doit(example, "release:prod/infra/db/pg/1.9.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "whose app has no exec" in result.stderr.strip().splitlines()[-1]
    assert not (example / "channels/prod/infra/db/pg/1.9.0").exists()
