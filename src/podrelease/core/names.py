"""Names of things: labels, AC names, channels, path segments, versions.

Everything here is validated before a single file is written, so the rest of
the code can join these strings into paths without fear of `..` or `/`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from packaging.version import InvalidVersion, Version

AC_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
# appc ACIdentifier: what an image's appc name must be.
AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*\Z")
MAX_NAME = 255
MAX_LABEL_PATH = 1024
MAX_QUOTED = 80  # characters of a user's value repeated in an error message


def quoted(value: object) -> str:
    """`repr(value)`, cut short: an error line must stay one readable line.

    A value can be as long as the file (a megabyte on one line); the message
    only needs enough of it to be recognised.
    """
    text = repr(value)
    if len(text) <= MAX_QUOTED:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:MAX_QUOTED]}...{size}"


def did_you_mean(text: str, known: Iterable[object]) -> str:
    """`; did you mean X or Y?` naming the closest of `known` to a mistyped name, or ''.

    Labels share their `//path:` so much that `//web:backend` looks like
    `//web:frontend`; the part after the last `:` must be close too.
    """
    close = [
        name for name in difflib.get_close_matches(text, sorted({str(k) for k in known}), n=3, cutoff=0.6)
        if difflib.SequenceMatcher(None, text.rpartition(":")[2], name.rpartition(":")[2]).ratio() >= 0.6
    ]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def check_ac_name(text: object, what: str) -> str:
    """An image, pod or volume name: an appc AC name."""
    if not isinstance(text, str) or len(text) > MAX_NAME or not AC_NAME.match(text):
        raise ValueError(f"{what} {quoted(text)} is not a valid name (lowercase letters, digits and single dashes)")
    return text


def check_segment(text: object, what: str) -> str:
    """A channel name or one label-path segment."""
    if (
        not isinstance(text, str)
        or len(text) > MAX_NAME
        or not SEGMENT.match(text)
        or text in (".", "..")
    ):
        raise ValueError(f"{what} {quoted(text)} is not valid (lowercase letters, digits, '.', '_' and '-')")
    return text


def check_version(text: object, what: str = "version") -> str:
    if (
        not isinstance(text, str)
        or len(text) > MAX_NAME
        or not VERSION.match(text)
        or text == "tip"
    ):
        raise ValueError(f"{what} {quoted(text)} is not a valid version")
    return text


def check_label_path(text: str, what: str = "label path") -> str:
    """`''` or `/`-joined segments, never absolute, never `..`.

    Its length is bounded too: a label path becomes part of file paths, and
    a label is repeated in messages.
    """
    if text == "":
        return text
    if len(text) > MAX_LABEL_PATH:
        raise ValueError(f"{what} {quoted(text)} is longer than {MAX_LABEL_PATH} characters")
    for segment in text.split("/"):
        check_segment(segment, f"{what} segment")
    return text


@dataclass(frozen=True, order=True, slots=True)
class Label:
    """`//<path>:<name>`; `path` is '' for the top of the tree."""

    path: str
    name: str

    @classmethod
    def parse(cls, text: object, default_path: str | None = None) -> Label:
        """Parse a full label, or a bare name relative to `default_path`."""
        if not isinstance(text, str):
            raise ValueError(f"label {quoted(text)} must be a string like //web:frontend")
        if text.startswith("//"):
            path, sep, name = text[2:].partition(":")
            if not sep:
                raise ValueError(f"label {quoted(text)} has no ':<name>' part")
        elif default_path is not None and ":" not in text and "/" not in text:
            path, name = default_path, text
        else:
            raise ValueError(f"label {quoted(text)} must look like //<label_path>:<name>")
        check_label_path(path, f"label {quoted(text)}: path")
        check_ac_name(name, f"label {quoted(text)}: name")
        return cls(path, name)

    def __str__(self) -> str:
        return f"//{self.path}:{self.name}"

    def join(self, *parts: str) -> str:
        """`<path>/<name>/<parts...>` with no leading slash for the top path."""
        return "/".join(p for p in (self.path, self.name, *parts) if p)


LEADING_RELEASE = re.compile(r"[vV]?(\d+(?:\.\d+)*)")


@cache
def version_key(version: str) -> tuple:
    """Order versions by their numeric parts: 1.10.0 > 1.9.0.

    PEP 440 versions (the common case) order as `packaging` orders them.
    Any other version (`2.0.0-hotfix1`, `2024-01-15`) orders by its leading
    numeric release among them, so `2.0.0-hotfix1` > `1.5.0` and
    `2024-01-15` > `1.0`: a version with a suffix PEP 440 does not know
    must not fall below every PEP 440 one, or tip and cleanup would treat
    the newest release as the oldest. Such a version comes just before the
    plain release it extends (as a semver pre-release would), and versions
    with the same release order by their numeric and text runs.
    """
    try:
        return (Version(version), 1, ())
    except InvalidVersion:
        leading = LEADING_RELEASE.match(version)
        release = Version(leading.group(1)) if leading else Version("0")
        runs = re.findall(r"\d+|[^\d]+", version)
        return (release, 0, tuple((1, int(r), "") if r.isdigit() else (0, 0, r) for r in runs))


@dataclass(frozen=True, order=True)
class PodVersion:
    """`<channel>/<label_path>/<pod>/<version>`: one version of a pod in a channel."""

    channel: str
    pod: Label
    version: str

    def __str__(self) -> str:
        return f"{self.channel}/{self.pod.join(self.version)}"
