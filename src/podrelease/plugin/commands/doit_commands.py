"""doit's own `info` and `help` (and `list`, see listing.py), registered in their place so they never print a traceback.

- Output piped into something that stops reading (`doit list | head`) ends
  quietly with exit 0, as `git log | head` does: a closed pipe is not an error.
- `doit info` of a task that does not exist says so in one line, with the
  closest task names, and exits 3 (doit's "before anything ran") instead of
  raising a KeyError.

Everything else is doit's: these are thin subclasses over its commands.
"""

from __future__ import annotations

import difflib
import os
import sys

from doit.cmd_help import Help as DoitHelp
from doit.cmd_info import Info as DoitInfo
from doit.exceptions import InvalidCommand

from .base import USAGE_ERROR


def reader_gone() -> int:
    """The reader of stdout has gone: point stdout at /dev/null so exit's flush cannot fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class Help(DoitHelp):
    def execute(self, params, args):
        try:
            return super().execute(params, args)
        except BrokenPipeError:
            return reader_gone()


class Info(DoitInfo):
    def _execute(self, pos_args, hide_status=False):
        known = [task.name for task in self.task_list]
        if len(pos_args) == 1 and pos_args[0] not in known:
            close = difflib.get_close_matches(pos_args[0], known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else f" (see `{self.bin_name} list`)"
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
