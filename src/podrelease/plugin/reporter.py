"""How doit reports podrelease failures: one `path:line: message` line each.

doit's console reporter prints a banner and a traceback for a failed
action. A user's mistake deserves one line naming the file instead, after
any output of the command that failed; unexpected errors (bugs) still get
doit's full report.
"""

from __future__ import annotations

import sys

from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter


class ReleaseFailed(TaskFailed):
    """A task failed because of the user's files or commands."""

    def __init__(self, line: str, details: str = ""):
        super().__init__(line)
        self.line = line
        self.details = details


class ReleaseReporter(ConsoleReporter):
    desc = "doit's console output, with one line per podrelease error"

    def add_failure(self, task, fail):
        if isinstance(fail, ReleaseFailed):
            if fail.details:
                sys.stderr.write(fail.details if fail.details.endswith("\n") else fail.details + "\n")
            sys.stderr.write(fail.line + "\n")
            return
        super().add_failure(task, fail)


def exit_with(error: Exception) -> None:
    """Stop before doit does anything: print the error's lines, exit 1."""
    sys.stderr.write(f"{error}\n")
    raise SystemExit(1)
