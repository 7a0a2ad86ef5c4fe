"""Every error podrelease means to show a person: one root, one line each.

This module imports nothing from podrelease (like pip's `exceptions.py`):
any module may raise these, and the edges catch `PodreleaseError` alone.

Two families share the root:

- `UserError`: a mistake in the user's release-root files or command line,
  printed as `path:line: message` (the line, or the path, omitted when
  nothing locates it);
- `ContractError`: a bad input from outside (a `pod.json`, a bundle, a web
  server, a store on disk) or a failed check; its message says what and
  where, and `ops-onboard` prints it as `ops-onboard: <message>`.

Nothing here ever needs a traceback to be understood.

Every message is made printable when it is formatted (`printable`): names
and paths in it may come from a hostile pod.json, tarball or file name, and
a control character reaching the terminal could move the cursor, clear the
screen or start a line of its own (a fake "deployed ..." after the error).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and
# isolates (they reorder what follows on the line), and lone surrogates (an undecodable
# file name byte, which no terminal encoding can print).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                          "\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`).

    The one way a message with untrusted names in it is made safe for a
    terminal: a newline in a name becomes `\\x0a`, so one error stays one line.
    """
    return _UNPRINTABLE.sub(_escaped, text)


MAX_WHERE = 200  # characters of a location shown in full


def _shortened(path: str) -> str:
    """A location cut in its middle when longer than MAX_WHERE: a hostile tree can nest folders
    to a path of kilobytes, and the error line must stay one readable line."""
    if len(path) <= MAX_WHERE:
        return path
    return f"{path[:120]}...({len(path)} characters)...{path[-60:]}"


class PodreleaseError(Exception):
    """Anything podrelease reports as one line (or one line per mistake) and a non-zero exit."""

    def __str__(self) -> str:
        return printable(super().__str__())


class UserError(PodreleaseError):
    """A mistake in the user's files, reported as `path:line: message`."""

    def __init__(self, path: str | None, line: int | None, message: str):
        super().__init__(message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = _shortened(self.path or "podrelease")
        if self.line is not None:
            where = f"{where}:{self.line}"
        return printable(f"{where}: {self.message}")

    @property
    def each(self) -> list[UserError]:
        """The single mistakes this error stands for (itself, unless it gathers several)."""
        return [self]


class UserErrors(UserError):
    """Several files with mistakes: each gets its own line."""

    def __init__(self, errors: list[UserError]):
        first = errors[0]
        super().__init__(first.path, first.line, first.message)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    @property
    def each(self) -> list[UserError]:
        return list(self.errors)


def collect(*loaders: Callable[[], Any]) -> list[Any]:
    """Run each loader; raise every mistake they all found, one line each, or return their results."""
    results: list[Any] = []
    errors: list[UserError] = []
    for loader in loaders:
        try:
            results.append(loader())
        except UserError as err:
            errors.extend(err.each)
    if errors:
        raise UserErrors(errors)
    return results


def distinct(errors: Iterable[UserError]) -> list[UserError]:
    """One line per mistake: a broken rule fails every instruction that uses it."""
    return list({str(error): error for error in errors}.values())


class ContractError(PodreleaseError):
    """A bad input from outside, or a failed check; the message says what and where."""


class PodJsonError(ContractError):
    """A `pod.json` that is missing, not JSON, or not shaped as the spec says.

    Made by `at`, it also keeps the `problem` without its `where` prefix,
    the JSON `line` if known, and a `kind`: "file" (missing, not a regular
    file, unreadable, too large), "json" (not JSON) or "shape" (not the spec's).
    """

    problem: str = ""
    line: int | None = None
    kind: str = "shape"

    @classmethod
    def at(cls, where: str, problem: str, line: int | None = None, kind: str = "file", said: str | None = None) -> PodJsonError:
        """`said`: how the message puts the problem, when it tells more than `problem` (a JSON position)."""
        error = cls(f"{where}: {said or problem}")
        error.problem, error.line, error.kind = problem, line, kind
        return error


class IntegrityError(ContractError):
    """Content whose hash differs from what `pod.json` (or a record) says."""


class UnsafeArchiveError(ContractError):
    """A tarball member that would land outside its directory, or is not plain data."""


class FetchError(ContractError):
    """A source that cannot be read: missing file, HTTP error, retries exhausted."""


class SignatureError(ContractError):
    """A `pod.json.sig` that is missing, malformed, or not made by a key trusted for its channel."""


class RegistryError(ContractError):
    """A registry that cannot be reached, refuses our credentials or a push, or holds other content under a tag."""


class LockTimeout(ContractError):
    """Another process held a lock for longer than we were willing to wait."""
