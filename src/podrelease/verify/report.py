"""What `doit verify` says: one `Problem` per fault, and the `Report` of them all.

Every problem found becomes one `Problem`, shown as `path[:line]: message`
with the path relative to the release root. One fault is one line: the
checkers take care not to report a fault twice (see images.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError
from ..model.layout import ReleaseRoot

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong. `path` is relative to the release root."""

    kind: str  # image, pod, tip, instruction, rule, drift
    path: str
    message: str
    severity: str = ERROR  # or WARNING
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{where}: {prefix}{self.message}"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "message": self.message,
        }


@dataclass
class Report:
    problems: list[Problem]
    checked: dict[str, int]

    @property
    def errors(self) -> int:
        return sum(p.severity == ERROR for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == WARNING for p in self.problems)

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors or (strict and self.warnings))

    def summary(self) -> str:
        c = self.checked
        return (
            f"verify: {_count(self.errors, 'error')}, {_count(self.warnings, 'warning')} "
            f"(checked {_count(c['images'], 'image')}, {_count(c['pods'], 'pod')}, "
            f"{_count(c['tips'], 'tip')}, {_count(c['instructions'], 'instruction')})"
        )

    def to_json(self) -> dict:
        return {
            "problems": [p.to_json() for p in self.problems],
            "checked": dict(self.checked),
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Problems:
    """The problems found so far: every checker appends here."""

    def __init__(self, root: ReleaseRoot):
        self.root = root
        self.found: list[Problem] = []

    def report(self, kind: str, path: Path | str, message: str, severity: str = ERROR, line: int | None = None) -> None:
        """One problem at `path` (a Path is shown relative to the release root)."""
        shown = self.root.shown(path) if isinstance(path, Path) else path
        self.found.append(Problem(kind, shown, message, severity, line))

    def report_error(self, kind: str, err: UserError, severity: str = ERROR) -> None:
        """One problem per mistake a `UserError` (or `UserErrors`) stands for."""
        for one in getattr(err, "errors", [err]):
            self.found.append(Problem(kind, one.path or "", one.message, severity, one.line))

    def sorted(self) -> list[Problem]:
        """Every problem, by path, line and message."""
        return sorted(self.found, key=lambda p: (p.path, p.line or 0, p.message))


def short(digest: str) -> str:
    """Enough of a digest to tell two apart."""
    return digest[: len("sha512-") + 16] + "…" if digest.startswith("sha512-") else digest[:16] + "…"
