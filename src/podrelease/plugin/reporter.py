"""How doit reports podrelease failures: one `path:line: message` line each.

doit's console reporter prints a banner and a traceback for a failed
action. A user's mistake deserves one line naming the file instead, after
any output of the command that failed; unexpected errors (bugs) still get
doit's full report.

A run ends with one line saying what it did: images built, pods
assembled, tips moved. Each action says what it did in a task value
(`WORK_DONE`), which doit hands back from a `-P process` worker too.
"""

from __future__ import annotations

import sys

from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter

from ..core.errors import printable

WORK_DONE = "podrelease_did"  # the task value naming what an action did
DONE_WORDS = (("image", "image built", "images built"), ("pod", "pod assembled", "pods assembled"), ("tip", "tip moved", "tips moved"))


def summary(done: dict[str, int]) -> str:
    """`2 images built, 1 pod assembled, 0 tips moved`."""
    return ", ".join(f"{done.get(key, 0)} {one if done.get(key, 0) == 1 else many}" for key, one, many in DONE_WORDS)


class ReleaseFailed(TaskFailed):
    """A task failed because of the user's files or commands."""

    def __init__(self, line: str, details: str = ""):
        super().__init__(line)
        self.line = line
        self.details = details


class ReleaseReporter(ConsoleReporter):
    desc = "doit's console output, with one line per podrelease error and a summary"

    def __init__(self, outstream, options) -> None:
        super().__init__(outstream, options)
        self.done: dict[str, int] = {}

    def add_success(self, task):
        did = (task.values or {}).get(WORK_DONE)
        if did:
            self.done[did] = self.done.get(did, 0) + 1
        super().add_success(task)

    def complete_run(self):
        super().complete_run()
        failed = f"; {len(self.failures)} task{'s' if len(self.failures) != 1 else ''} failed" if self.failures else ""
        self.write(f"{summary(self.done)}{failed}\n")

    def add_failure(self, task, fail):
        if isinstance(fail, ReleaseFailed):
            if fail.details:
                sys.stderr.write(fail.details if fail.details.endswith("\n") else fail.details + "\n")
            sys.stderr.write(printable(fail.line) + "\n")
            return
        super().add_failure(task, fail)


def exit_with(error: Exception) -> None:
    """Stop before doit does anything: print the error's lines, exit 1."""
    sys.stderr.write(f"{error}\n")  # a PodreleaseError: printable when formatted
    raise SystemExit(1)
