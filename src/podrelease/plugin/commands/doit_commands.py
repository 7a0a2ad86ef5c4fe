"""doit's own `info` and `help` (and `list`, see listing.py), registered in their place so they never print a traceback.

- Output piped into something that stops reading (`doit list | head`) ends
  quietly with exit 0, as `git log | head` does: a closed pipe is not an error.
- `doit info` of a task that does not exist says so in one line, with the
  closest task names, and exits 3 (doit's "before anything ran") instead of
  raising a KeyError.

- In a subfolder of a release root, every doit command that loads tasks
  (`run`, the default, `clean`, `forget`, `ignore`, `info`, `help`,
  `strace`, `reset-dep`, `list`) works on that root
  (`root.seek_release_root`), as git finds its repository.

Everything else is doit's: these are thin subclasses over its commands.
"""

from __future__ import annotations

import os
import sys

from doit.cmd_clean import Clean as DoitClean
from doit.cmd_forget import Forget as DoitForget
from doit.cmd_help import Help as DoitHelp
from doit.cmd_ignore import Ignore as DoitIgnore
from doit.cmd_info import Info as DoitInfo
from doit.cmd_resetdep import ResetDep as DoitResetDep
from doit.cmd_run import Run as DoitRun
from doit.cmd_strace import Strace as DoitStrace
from doit.exceptions import InvalidCommand

from ...core.names import did_you_mean
from ..root import seek_release_root
from .base import USAGE_ERROR


def reader_gone() -> int:
    """The reader of stdout has gone: point stdout at /dev/null so exit's flush cannot fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class SeeksRoot:
    """A doit command that, in a subfolder of a release root, works on that root."""

    def execute(self, params, args):
        seek_release_root(params)
        return super().execute(params, args)


class Run(SeeksRoot, DoitRun):
    """`doit [TASK...]`; an unknown task is one line with the closest task names."""

    def execute(self, params, args):
        try:
            return super().execute(params, args)
        except InvalidCommand as err:
            if err.not_found is None:
                raise
            known = [task.name for task in self.task_list]
            hint = did_you_mean(err.not_found, known) or f" (see `{self.bin_name} list`)"
            raise InvalidCommand(f"no task or command {err.not_found!r}{hint}") from None


class Clean(SeeksRoot, DoitClean):
    pass


class Forget(SeeksRoot, DoitForget):
    pass


class Ignore(SeeksRoot, DoitIgnore):
    pass


class Strace(SeeksRoot, DoitStrace):
    pass


class ResetDep(SeeksRoot, DoitResetDep):
    pass


class Help(SeeksRoot, DoitHelp):
    def execute(self, params, args):
        try:
            return super().execute(params, args)
        except BrokenPipeError:
            return reader_gone()


class Info(SeeksRoot, DoitInfo):
    def _execute(self, pos_args, hide_status=False):
        known = [task.name for task in self.task_list]
        if len(pos_args) == 1 and pos_args[0] not in known:
            hint = did_you_mean(pos_args[0], known) or f" (see `{self.bin_name} list`)"
            raise InvalidCommand(f"no task {pos_args[0]!r}{hint}")
        return super()._execute(pos_args, hide_status)

    def execute(self, params, args):
        try:
            return super().execute(params, args)
        except InvalidCommand as err:
            sys.stderr.write(f"doit info: {err}\n")
            return USAGE_ERROR
        except BrokenPipeError:
            return reader_gone()
