"""YAML documents with line numbers (podrelease.model.documents), on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from podrelease.core.errors import UserError
from podrelease.model.documents import Fields, load


def loaded(tmp_path: Path, text: str | bytes):
    path = tmp_path / "build.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load(path, "shipyard/web/build.yaml")


def refusal(tmp_path: Path, text: str | bytes) -> UserError:
    with pytest.raises(UserError) as raised:
        loaded(tmp_path, text)
    return raised.value


SAMPLE = """\
# a comment
images:
  frontend:
    rootfs:
      - {src: app/, dst: /srv/}
      - src: conf/
        dst: /etc/
pods:
  frontend: {images: [frontend]}
"""

# ---------------------------------------------------------------- lines


def test_the_line_of_a_key_is_recorded(tmp_path):
    doc = loaded(tmp_path, SAMPLE)
    assert doc.line(("images",)) == 2
    assert doc.line(("images", "frontend")) == 3
    assert doc.line(("pods", "frontend")) == 9


def test_the_line_of_a_list_item_is_recorded(tmp_path):
    doc = loaded(tmp_path, SAMPLE)
    assert doc.line(("images", "frontend", "rootfs", 0)) == 5
    assert doc.line(("images", "frontend", "rootfs", 1)) == 6
    assert doc.line(("images", "frontend", "rootfs", 1, "dst")) == 7


def test_an_absent_place_takes_the_line_of_its_nearest_parent(tmp_path):
    doc = loaded(tmp_path, SAMPLE)
    assert doc.line(("images", "frontend", "app", "exec")) == 3


def test_an_error_names_the_file_and_line(tmp_path):
    doc = loaded(tmp_path, SAMPLE)
    assert str(doc.error(("pods", "frontend"), "no such image")) == "shipyard/web/build.yaml:9: no such image"


# ---------------------------------------------------------------- scalars as written


def test_a_version_like_1_10_is_kept_as_written(tmp_path):
    doc = loaded(tmp_path, "version: 1.10\n")
    assert doc.text(("version",)) == "1.10"
    assert Fields(doc).text(("version",), "version") == "1.10"


def test_a_number_read_as_text_keeps_its_leading_zeros(tmp_path):
    doc = loaded(tmp_path, "user: 0100\n")
    assert Fields(doc).text(("user",), "user") == "0100"


def test_plain_values_keep_their_yaml_types_in_data(tmp_path):
    doc = loaded(tmp_path, "yanked: true\nkeep: 3\nreason: ~\n")
    assert doc.data == {"yanked": True, "keep": 3, "reason": None}


def test_an_empty_file_is_an_empty_document(tmp_path):
    assert loaded(tmp_path, "").data is None


# ---------------------------------------------------------------- refused


def test_a_duplicate_key_is_refused_at_its_second_line(tmp_path):
    error = refusal(tmp_path, "images: {}\npods: {}\nimages: {}\n")
    assert str(error) == "shipyard/web/build.yaml:3: duplicate key 'images'"


def test_a_python_tag_is_refused(tmp_path):
    error = refusal(tmp_path, "pods: !!python/object/apply:os.system [echo hi]\n")
    assert error.line == 1
    assert error.message == "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"


def test_a_custom_tag_is_refused(tmp_path):
    error = refusal(tmp_path, "images:\n  web: !image {}\n")
    assert (error.line, error.message) == (2, "unsupported YAML tag '!image'")


def test_a_binary_tag_is_refused(tmp_path):
    error = refusal(tmp_path, "data: !!binary aGVsbG8=\n")
    assert error.message == "unsupported YAML tag 'tag:yaml.org,2002:binary'"


def test_a_merge_key_is_refused(tmp_path):
    error = refusal(tmp_path, "base: &b {a: 1}\nimage:\n  <<: *b\n")
    assert (error.line, error.message) == (3, "keys must be plain scalars (no merge keys or nested keys)")


def test_flow_nesting_deeper_than_64_levels_is_refused(tmp_path):
    error = refusal(tmp_path, "[" * 65 + "]" * 65 + "\n")
    assert str(error) == "shipyard/web/build.yaml:1: document is nested deeper than 64 levels"


def test_flow_nesting_of_64_levels_is_read(tmp_path):
    doc = loaded(tmp_path, "[" * 64 + "]" * 64 + "\n")
    assert isinstance(doc.data, list)


def test_block_nesting_deeper_than_64_levels_is_refused(tmp_path):
    text = "".join("  " * level + f"k{level}:\n" for level in range(70))
    error = refusal(tmp_path, text)
    assert error.message == "document is nested deeper than 64 levels"


def test_nesting_of_2000_levels_is_refused_with_the_same_message(tmp_path):
    # libyaml >= 0.2.6 has its own limit of 1000 levels; the message is ours whichever refuses first
    error = refusal(tmp_path, "[" * 2000 + "]" * 2000 + "\n")
    assert str(error) == "shipyard/web/build.yaml:1: document is nested deeper than 64 levels"


def test_more_than_50000_values_are_refused(tmp_path):
    error = refusal(tmp_path, "[" + "1, " * 50_001 + "]\n")
    assert error.message == "document has more than 50000 values"


def test_an_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    error = refusal(tmp_path, "\n".join(lines) + "\n")
    assert error.message == "document has more than 50000 values (alias expansion?)"


def test_a_file_that_is_not_utf8_is_refused_at_its_line(tmp_path):
    error = refusal(tmp_path, b"images: {}\n# caf\xe9\npods: {}\n")
    assert str(error) == "shipyard/web/build.yaml:2: file is not valid UTF-8"


def test_a_control_character_is_refused_at_its_line(tmp_path):
    error = refusal(tmp_path, "a: 1\nb: \x1b[31m\n")
    assert (error.line, error.message) == (2, "character U+001B is not allowed in YAML")


def test_a_file_larger_than_a_mebibyte_is_refused(tmp_path):
    error = refusal(tmp_path, "# " + "x" * (1 << 20) + "\n")
    assert error.message == "file is larger than 1024 KiB"


def test_invalid_yaml_is_one_line_with_its_line_number(tmp_path):
    error = refusal(tmp_path, "images:\n  web: [unclosed\npods: {}\n")
    assert error.message.startswith("invalid YAML: ")
    assert "\n" not in str(error)
    assert error.line is not None
