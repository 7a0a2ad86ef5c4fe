"""The tip rule (podrelease.model.tip): the highest released version not yanked."""

from __future__ import annotations

from pathlib import Path

from podrelease.model.tip import released_versions, tip_version


def pod_dir(home: Path, version: str, with_pod_json: bool = True) -> Path:
    folder = home / version
    folder.mkdir(parents=True)
    if with_pod_json:
        (folder / "pod.json").write_text("{}\n")
    return folder


# ---------------------------------------------------------------- tip_version


def test_tip_is_the_highest_version_in_version_order():
    assert tip_version(["1.9.0", "1.10.0", "1.2.0"]) == "1.10.0"


def test_tip_skips_a_yanked_highest_version():
    assert tip_version(["1.9.0", "1.10.0"], yanked=["1.10.0"]) == "1.9.0"


def test_there_is_no_tip_when_every_version_is_yanked():
    assert tip_version(["1.0.0", "1.1.0"], yanked=["1.0.0", "1.1.0"]) is None


def test_there_is_no_tip_without_releases():
    assert tip_version([]) is None


def test_a_yanked_version_that_was_never_released_changes_nothing():
    assert tip_version(["1.0.0"], yanked=["2.0.0"]) == "1.0.0"


def test_tip_orders_a_non_pep440_version_by_its_release():
    assert tip_version(["1.5.0", "2.0.0-hotfix1"]) == "2.0.0-hotfix1"


# ---------------------------------------------------------------- released_versions


def test_released_versions_are_the_directories_holding_a_pod_json(tmp_path):
    pod_dir(tmp_path, "1.0.0")
    pod_dir(tmp_path, "1.1.0")
    pod_dir(tmp_path, "1.2.0", with_pod_json=False)
    assert sorted(released_versions(tmp_path)) == ["1.0.0", "1.1.0"]


def test_the_tip_link_is_not_a_released_version(tmp_path):
    pod_dir(tmp_path, "1.0.0")
    (tmp_path / "tip").symlink_to("1.0.0")
    assert released_versions(tmp_path) == ["1.0.0"]


def test_dot_names_are_not_released_versions(tmp_path):
    pod_dir(tmp_path, "1.0.0")
    pod_dir(tmp_path, ".tmp-1.1.0")
    assert released_versions(tmp_path) == ["1.0.0"]


def test_directories_with_invalid_version_names_are_ignored(tmp_path):
    pod_dir(tmp_path, "1.0.0")
    pod_dir(tmp_path, "-1.1.0")
    pod_dir(tmp_path, "1.2.0 copy")
    assert released_versions(tmp_path) == ["1.0.0"]


def test_a_pod_json_that_is_a_directory_does_not_count(tmp_path):
    (tmp_path / "1.0.0" / "pod.json").mkdir(parents=True)
    assert released_versions(tmp_path) == []


def test_a_missing_pod_home_has_no_released_versions(tmp_path):
    assert released_versions(tmp_path / "nowhere") == []
