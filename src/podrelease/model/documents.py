"""YAML documents with line numbers, read with PyYAML's C parser.

PyYAML's constructor forgets where values came from, so this module walks the
composed node tree itself and records the line of every key and item. The
walk also refuses what a release file never needs and an attacker might send:
duplicate keys, oversized files, alias bombs, deep nesting and custom tags.
Scalars keep their source text, so a version such as `1.10` is read as
written rather than as the float 1.1.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import UserError
from ..core.names import quoted

MAX_BYTES = 1 << 20
MAX_VALUES = 50_000
MAX_DEPTH = 64
SHALLOW_BYTES = 16 * 1024  # too small to hold MAX_VALUES nodes
TOO_DEEP = f"document is nested deeper than {MAX_DEPTH} levels"
LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"  # libyaml >= 0.2.6's own limit (1000 levels)

Where = tuple  # a path into the document: keys and list indexes

# What YAML 1.1 lets a stream hold (its "printable" set); libyaml rejects the
# rest with a multi-line message and a character offset instead of a line.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}


@dataclass(frozen=True)
class Document:
    """A parsed file: plain data plus where each value came from."""

    path: str  # as shown in messages, relative to the release root
    data: object
    lines: dict
    texts: dict

    def line(self, where: Where) -> int | None:
        """The line of `where`, or of its nearest located parent."""
        while True:
            if where in self.lines:
                return self.lines[where]
            if not where:
                return None
            where = where[:-1]

    def error(self, where: Where, message: str) -> UserError:
        return UserError(self.path, self.line(where), message)

    def text(self, where: Where) -> str | None:
        """The scalar at `where` exactly as written in the file."""
        return self.texts.get(where)


def load(path: Path, shown_as: str) -> Document:
    """Read and parse one YAML file; every problem is a UserError."""
    data = _read_text(path, shown_as)
    try:
        _check_shape(data, shown_as)
        loader = yaml.CSafeLoader(data)
        try:
            node = loader.get_single_node()
            return _Walk(loader, shown_as).document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = err.problem or err.context or "invalid YAML"
        if LIBYAML_TOO_DEEP in problem:
            # newer libyaml refuses deep nesting itself, before our own walk reaches MAX_DEPTH:
            # the same mistake must read the same whichever libyaml finds it
            raise UserError(shown_as, line, TOO_DEEP) from None
        raise UserError(shown_as, line, f"invalid YAML: {_one_line(problem)}") from None
    except yaml.YAMLError as err:
        raise UserError(shown_as, None, f"invalid YAML: {_one_line(str(err))}") from None


def _one_line(message: str) -> str:
    """The first line of a parser message: a user error is one line."""
    lines = message.strip().splitlines()
    return lines[0] if lines else "invalid YAML"


def _read_text(path: Path, shown_as: str) -> str:
    """The file's text, at most MAX_BYTES of UTF-8 YAML characters.

    Opened without blocking and refused unless it is a regular file: a fifo
    or a device (perhaps behind a symlink) would otherwise hang or never end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise UserError(shown_as, None, f"cannot read: {err.strerror}") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(shown_as, None, "not a regular file")
        try:
            raw = f.read(MAX_BYTES + 1)
        except OSError as err:
            raise UserError(shown_as, None, f"cannot read: {err.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UserError(shown_as, None, f"file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(shown_as, line, "file is not valid UTF-8") from None
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise UserError(shown_as, line, f"character U+{ord(bad.group()):04X} is not allowed in YAML")
    return text


def _check_shape(text: str, shown_as: str) -> None:
    """Refuse deep nesting and too many nodes before PyYAML composes them.

    libyaml parses with a heap stack, but PyYAML's composer recurses once per
    level in C: a megabyte of `[` overflows the stack and kills the process.
    Walking the events first keeps composing shallow and its memory bounded.
    """
    if _surely_small(text):
        return
    depth = nodes = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_VALUES:
                raise UserError(shown_as, _line(event), f"document has more than {MAX_VALUES} values")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(shown_as, _line(event), TOO_DEEP)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line(event: yaml.Event) -> int:
    """The line (from 1) where a parsed event starts; the parser marks every event."""
    assert event.start_mark is not None
    return event.start_mark.line + 1


def _surely_small(text: str) -> bool:
    """Whether `text` cannot be too deep or too big, without parsing it twice.

    Every collection starts at one of `[{-?:`, so a file with at most
    MAX_DEPTH of them cannot nest deeper; a file of SHALLOW_BYTES has far
    fewer than MAX_VALUES nodes. Most release files pass this and are parsed once.
    """
    return len(text) <= SHALLOW_BYTES and sum(map(text.count, "[{-?:")) <= MAX_DEPTH


class _Walk:
    """Turn a node tree into plain data, recording lines and scalar texts."""

    def __init__(self, loader: yaml.CSafeLoader, shown_as: str):
        self.loader = loader
        self.shown_as = shown_as
        self.lines: dict = {}
        self.texts: dict = {}
        self.count = 0

    def document(self, node) -> Document:
        data = None if node is None else self.value(node, (), 0)
        if node is not None:
            self.lines[()] = node.start_mark.line + 1
        return Document(self.shown_as, data, self.lines, self.texts)

    def fail(self, node, message: str) -> UserError:
        return UserError(self.shown_as, node.start_mark.line + 1, message)

    def value(self, node, where: Where, depth: int):
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(node, f"document has more than {MAX_VALUES} values (alias expansion?)")
        if depth > MAX_DEPTH:
            raise self.fail(node, TOO_DEEP)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, where)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(node, f"unsupported YAML tag {quoted(node.tag)}")
            items = []
            for index, item in enumerate(node.value):
                self.lines[where + (index,)] = item.start_mark.line + 1
                items.append(self.value(item, where + (index,), depth + 1))
            return items
        if node.tag != "tag:yaml.org,2002:map":
            raise self.fail(node, f"unsupported YAML tag {quoted(node.tag)}")
        mapping: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, "keys must be plain scalars (no merge keys or nested keys)")
            if key_node.tag not in _SCALAR_TAGS:
                raise self.fail(key_node, f"unsupported YAML tag {quoted(key_node.tag)}")
            key = key_node.value
            if key in mapping:
                raise self.fail(key_node, f"duplicate key {quoted(key)}")
            self.lines[where + (key,)] = key_node.start_mark.line + 1
            mapping[key] = self.value(value_node, where + (key,), depth + 1)
        return mapping

    def scalar(self, node, where: Where):
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"unsupported YAML tag {quoted(node.tag)}")
        self.texts[where] = node.value
        if node.tag == "tag:yaml.org,2002:str" or node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        if node.tag == "tag:yaml.org,2002:null":
            return None
        if node.tag == "tag:yaml.org,2002:bool":
            return self.loader.construct_yaml_bool(node)
        if node.tag == "tag:yaml.org,2002:int":
            return self.integer(node)
        return self.loader.construct_yaml_float(node)

    def integer(self, node):
        """Python refuses to convert more than 4300 decimal digits (a ValueError)."""
        try:
            return self.loader.construct_yaml_int(node)
        except ValueError:
            raise self.fail(node, f"integer {quoted(node.value)} is too large") from None


class _AnyKey(frozenset):
    """Allowed-keys set for mappings whose keys are data (names, labels)."""

    def __contains__(self, key: object) -> bool:
        return True


ANY_KEY = _AnyKey()


class Fields:
    """Typed reads from a Document, each failure located at its line.

    Scalars meant as text (names, args, versions) are taken as written in
    the file, so `8080` or `1.10` never pass through int or float.
    """

    def __init__(self, doc: Document):
        self.doc = doc

    def mapping(self, where: Where, allowed: frozenset[str] | set[str], what: str) -> dict:
        value = self.at(where)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.doc.error(where, f"{what} must be a mapping")
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.doc.error(where + (key,), f"unknown key {quoted(key)} in {what} (known: {known})")
        return value

    def at(self, where: Where):
        """The value at `where`; None where a key or item is absent."""
        value: Any = self.doc.data
        for step in where:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    def text(self, where: Where, what: str) -> str:
        value = self.at(where)
        if isinstance(value, (dict, list)) or value is None:
            raise self.doc.error(where, f"{what} must be a string")
        if isinstance(value, str):
            return value
        written = self.doc.text(where)
        assert written is not None  # every scalar's text is kept as it is read
        return written

    def optional_text(self, where: Where, what: str) -> str | None:
        return None if self.at(where) is None else self.text(where, what)

    def flag(self, where: Where, what: str) -> bool:
        value = self.at(where)
        if not isinstance(value, bool):
            raise self.doc.error(where, f"{what} must be true or false")
        return value

    def integer(self, where: Where, what: str, low: int, high: int) -> int:
        value = self.at(where)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.doc.error(where, f"{what} must be an integer from {low} to {high}")
        return value

    def items(self, where: Where, what: str) -> list:
        """The indexes of a list (an absent list is empty)."""
        value = self.at(where)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.doc.error(where, f"{what} must be a list")
        return list(range(len(value)))

    def texts(self, where: Where, what: str) -> tuple[str, ...]:
        return tuple(self.text(where + (i,), f"each of {what}") for i in self.items(where, what))

    def name(self, where: Where, check, what: str) -> str:
        """The text at `where`, validated by a `names.check_*` function."""
        try:
            return check(self.text(where, what), what)
        except ValueError as err:
            raise self.doc.error(where, str(err)) from None
