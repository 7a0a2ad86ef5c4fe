"""The one exception type for mistakes a user makes in release-root files.

Every such mistake is reported as a single `path:line: message` line; the
line is omitted when no YAML node locates it.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's files, reported as `path:line: message`."""

    def __init__(self, path: str | None, line: int | None, message: str):
        super().__init__(message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = self.path or "podrelease"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


def collect(*loaders):
    """Run each loader; raise every mistake they all found, one line each, or return their results."""
    results, errors = [], []
    for loader in loaders:
        try:
            results.append(loader())
        except UserErrors as err:
            errors.extend(err.errors)
        except UserError as err:
            errors.append(err)
    if errors:
        raise UserErrors(errors)
    return results


class UserErrors(UserError):
    """Several files with mistakes: each gets its own line."""

    def __init__(self, errors: list[UserError]):
        first = errors[0]
        super().__init__(first.path, first.line, first.message)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
