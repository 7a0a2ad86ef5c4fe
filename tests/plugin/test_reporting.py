"""Say what happened: every tip move prints a line, and a run ends with a one-line summary."""

from __future__ import annotations

import pytest

from conftest import copy_example, doit
from instructing import instruct


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = copy_example(tmp_path_factory.mktemp("report") / "root")
    return root, doit(root, check=True)


def test_a_first_release_prints_each_new_tip_from_none(first_run):
    _, result = first_run
    assert "tip prod/web/frontend: (none) -> 1.1.0" in result.stdout.splitlines()
    assert "tip prod/infra/db/pg: (none) -> 1.10.0" in result.stdout.splitlines()


def test_a_run_ends_with_images_built_pods_assembled_and_tips_moved(first_run):
    _, result = first_run
    assert result.stdout.splitlines()[-1] == "8 images built, 6 pods assembled, 4 tips moved"


def test_a_run_with_nothing_to_do_says_so_in_its_summary(first_run):
    root, _ = first_run
    assert doit(root, check=True).stdout.splitlines()[-1] == "0 images built, 0 pods assembled, 0 tips moved"


def test_a_yank_prints_the_tip_moving_back(tmp_path):
    root = copy_example(tmp_path / "root")
    instruct(root, "1.2.0")
    doit(root, check=True)
    instruct(root, "1.2.0", "yanked: true\n" + (root / "channels/prod/web/frontend/1.2.0.yaml").read_text())
    result = doit(root, check=True)
    assert "tip prod/web/frontend: 1.2.0 -> 1.1.0" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "0 images built, 0 pods assembled, 1 tip moved"


def test_tip_lines_and_summary_come_back_from_worker_processes(tmp_path):
    root = copy_example(tmp_path / "root")
    result = doit(root, "-n", "2", "-P", "process", check=True)
    # a tip may move twice (to 1.0.0, then to 1.2.0 once that pod is assembled): each move is a line and counts
    moves = sum(line.startswith("tip ") for line in result.stdout.splitlines())
    assert moves >= 4
    assert result.stdout.splitlines()[-1] == f"8 images built, 6 pods assembled, {moves} tips moved"


def test_bundling_a_yanked_version_warns_with_its_reason(tmp_path):
    root = copy_example(tmp_path / "root")
    doit(root, check=True)
    instruct(root, "1.1.0", (root / "channels/prod/web/frontend/1.1.0.yaml").read_text() + 'yanked: true\nreason: "500s on /checkout"\n')
    result = doit(root, "bundle:prod/web/frontend/1.1.0", check=True)
    assert ("channels/prod/web/frontend/1.1.0.yaml: warning: bundling //web:frontend 1.1.0, which is yanked (500s on /checkout)"
            in result.stderr.splitlines())
    assert (root / "bundles/prod/web/frontend/1.1.0/pod.json").is_file()


def test_bundling_a_good_version_does_not_warn(tmp_path):
    root = copy_example(tmp_path / "root")
    result = doit(root, "bundle:prod/web/frontend/1.1.0", check=True)
    assert "warning" not in result.stderr
