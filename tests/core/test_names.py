"""Names of things (podrelease.core.names): version order, labels, name checks."""

from __future__ import annotations

import pytest

from podrelease.core.names import (
    Label,
    check_ac_name,
    check_label_path,
    check_segment,
    check_version,
    version_key,
)

# ---------------------------------------------------------------- version order


def test_version_order_compares_parts_as_numbers():
    assert version_key("1.10.0") > version_key("1.9.0")


def test_version_order_compares_date_versions_with_leading_zeros_as_numbers():
    assert version_key("26.032.1") > version_key("26.032.0")


def test_a_non_pep440_version_orders_by_its_leading_release():
    assert version_key("2.0.0-hotfix1") > version_key("1.5.0")


def test_a_date_version_that_is_not_pep440_is_above_a_small_pep440_one():
    assert version_key("2024-01-15") > version_key("10.0")


def test_a_pep440_version_above_a_non_pep440_one_stays_above():
    assert version_key("3.0.0") > version_key("2.0.0-hotfix1")


def test_a_suffixed_version_comes_just_before_its_plain_release():
    assert version_key("1.9.9") < version_key("2.0.0-hotfix1") < version_key("2.0.0")


def test_suffixed_versions_of_one_release_order_by_their_numbers():
    assert version_key("2.0.0-hotfix10") > version_key("2.0.0-hotfix9")


def test_a_pep440_pre_release_comes_before_its_release():
    assert version_key("1.0.0-rc1") < version_key("1.0.0")


def test_the_highest_of_mixed_versions_is_found_by_version_order():
    versions = ["1.0.0-rc1", "2", "10.0", "1.0.0+build", "2.0.0-hotfix1", "9.9"]
    assert max(versions, key=version_key) == "10.0"


# ---------------------------------------------------------------- labels


def test_a_full_label_parses_into_path_and_name():
    assert Label.parse("//web:frontend") == Label("web", "frontend")


def test_a_label_with_a_nested_path_parses():
    assert Label.parse("//infra/db:pg") == Label("infra/db", "pg")


def test_a_label_at_the_top_of_the_tree_has_an_empty_path():
    assert Label.parse("//:top") == Label("", "top")


def test_a_bare_name_parses_relative_to_the_default_path():
    assert Label.parse("logship", default_path="web") == Label("web", "logship")


def test_a_bare_name_without_a_default_path_is_refused():
    with pytest.raises(ValueError, match="must look like //<label_path>:<name>"):
        Label.parse("logship")


def test_a_label_without_a_name_is_refused():
    with pytest.raises(ValueError, match="has no ':<name>' part"):
        Label.parse("//web")


def test_a_label_that_is_not_a_string_is_refused():
    with pytest.raises(ValueError, match="must be a string"):
        Label.parse(42)


def test_a_label_path_with_dotdot_is_refused():
    with pytest.raises(ValueError, match="is not valid"):
        Label.parse("//web/../etc:passwd")


def test_a_label_with_an_uppercase_name_is_refused():
    with pytest.raises(ValueError, match="is not a valid name"):
        Label.parse("//web:Frontend")


def test_a_label_prints_as_it_is_written():
    assert str(Label("infra/db", "pg")) == "//infra/db:pg"


def test_a_top_label_prints_with_an_empty_path():
    assert str(Label("", "top")) == "//:top"


def test_a_label_joins_into_a_relative_path():
    assert Label("infra/db", "pg").join("1.10.0") == "infra/db/pg/1.10.0"


def test_a_top_label_joins_without_a_leading_slash():
    assert Label("", "top").join("1.0") == "top/1.0"


# ---------------------------------------------------------------- name checks


@pytest.mark.parametrize("name", ["frontend", "pg", "log-ship", "a1-b2"])
def test_valid_names_pass(name):
    assert check_ac_name(name, "image") == name


@pytest.mark.parametrize("name", ["Frontend", "-front", "front-", "front--end", "front_end", "", "front.end"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match="is not a valid name"):
        check_ac_name(name, "image")


def test_a_name_longer_than_255_characters_is_refused():
    with pytest.raises(ValueError, match="is not a valid name"):
        check_ac_name("a" * 256, "image")


def test_a_name_of_255_characters_passes():
    assert check_ac_name("a" * 255, "image") == "a" * 255


@pytest.mark.parametrize("segment", ["prod", "db.v2", "web_1", "a-b"])
def test_valid_segments_pass(segment):
    assert check_segment(segment, "channel") == segment


@pytest.mark.parametrize("segment", ["..", ".", "Prod", ".hidden", "a/b", ""])
def test_invalid_segments_are_refused(segment):
    with pytest.raises(ValueError, match="is not valid"):
        check_segment(segment, "channel")


@pytest.mark.parametrize("version", ["1.0.0", "26.032.1", "2.0.0-hotfix1", "2024-01-15", "1.0.0+build", "v2"])
def test_valid_versions_pass(version):
    assert check_version(version) == version


def test_tip_is_not_a_version():
    with pytest.raises(ValueError, match="'tip' is not a valid version"):
        check_version("tip")


@pytest.mark.parametrize("version", ["..", ".1", "-1", "1.0/2", "1 0", ""])
def test_invalid_versions_are_refused(version):
    with pytest.raises(ValueError, match="is not a valid version"):
        check_version(version)


def test_a_version_longer_than_255_characters_is_refused():
    with pytest.raises(ValueError, match="is not a valid version"):
        check_version("1" * 256)


def test_a_label_path_longer_than_1024_characters_is_refused():
    with pytest.raises(ValueError, match="is longer than 1024 characters"):
        check_label_path("/".join(["abcdefgh"] * 120))


def test_a_long_value_is_cut_short_in_the_message():
    with pytest.raises(ValueError) as raised:
        check_ac_name("X" * 10_000, "image")
    assert len(str(raised.value)) < 300
    assert "(10000 characters)" in str(raised.value)
