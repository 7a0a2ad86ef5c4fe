"""`doit list`: one line per release (R pending, U released, yanked with reason); `--all` lists every task."""

from __future__ import annotations

from conftest import copy_example, doit
from instructing import instruct

EXAMPLE_RELEASES = [
    "release:prod/infra/db/pg/1.9.0",
    "release:prod/infra/db/pg/1.10.0",
    "release:prod/web/frontend/1.1.0",
    "release:staging/infra/db/pg/1.10.0",
    "release:staging/web/frontend/1.0.0",
    "release:staging/web/frontend/1.2.0",
]


def release_rows(stdout: str) -> list[list[str]]:
    return [line.split(maxsplit=2) for line in stdout.splitlines() if line[:2] in ("R ", "U ")]


def test_plain_list_of_a_fresh_root_is_one_pending_line_per_release(example):
    result = doit(example, "list", check=True)
    rows = release_rows(result.stdout)
    assert [row[:2] for row in rows] == [["R", name] for name in EXAMPLE_RELEASES]
    assert len(result.stdout.splitlines()) <= len(rows) + 3
    assert "6 pending, 0 released, 0 yanked" in result.stdout


def test_plain_list_marks_released_versions_u_and_the_tip(released_example):
    rows = release_rows(doit(released_example, "list", check=True).stdout)
    assert ["U", "release:prod/infra/db/pg/1.10.0", "tip"] in rows
    assert ["U", "release:prod/infra/db/pg/1.9.0"] in rows


def test_a_yanked_release_shows_its_reason_and_the_tip_to_move(tmp_path):
    root = copy_example(tmp_path / "root")
    doit(root, check=True)
    instruct(root, "1.1.0", 'yanked: true\nreason: "500s on /checkout"\n')
    result = doit(root, "list", check=True)
    assert ["U", "release:prod/web/frontend/1.1.0", "yanked: 500s on /checkout"] in release_rows(result.stdout)
    assert "tips to move: prod/web/frontend: 1.1.0 -> (none)" in result.stdout


def test_list_arguments_select_by_channel_pod_or_task_name(released_example):
    result = doit(released_example, "list", "-q", "staging/web", "release:prod/infra/db/pg/1.9.0", check=True)
    assert result.stdout.split() == [
        "release:prod/infra/db/pg/1.9.0", "release:staging/web/frontend/1.0.0", "release:staging/web/frontend/1.2.0",
    ]


def test_a_list_filter_that_matches_nothing_suggests_the_closest(released_example):
    result = doit(released_example, "list", "prdo")
    assert result.returncode == 3
    assert result.stderr == "doit list: nothing matches 'prdo'; did you mean prod?\n"


def test_list_all_shows_every_task_and_where_each_tip_points(released_example):
    result = doit(released_example, "list", "--all", check=True)
    lines = result.stdout.splitlines()
    assert any(line.startswith("U image:web/frontend/1.1.0") for line in lines)
    assert "U tip:prod/web/frontend                -> 1.1.0" in lines


def test_plain_list_refuses_a_broken_build_file_as_doit_does(tmp_path):
    root = copy_example(tmp_path / "root")
    (root / "shipyard/web/build.yaml").write_text("images: {frontend: {rootfs: 7}}\n")
    result = doit(root, "list")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("shipyard/web/build.yaml:1: ")
