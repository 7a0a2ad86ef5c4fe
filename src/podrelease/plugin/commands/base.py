"""What every podrelease command shares: exit codes, the release root, one-line errors."""

from __future__ import annotations

import sys

from doit.cmd_base import Command

from ...core.errors import PodreleaseError, UserError, printable
from ...model.layout import ReleaseRoot
from ..root import release_root, root_problem

USAGE_ERROR = 3  # doit's code for an error before anything is checked
REFUSED = 1  # the command understood what was asked and refused it, or it failed


class Usage(Exception):
    """The command line itself is wrong: exit 3 like doit does, before anything is read."""


class RootCommand(Command):
    """A podrelease command run in a release root; its errors are one line each.

    A mistake located in a file prints as `path:line: message`; any other
    refusal as `doit <command>: message`. Options may follow the positional
    arguments (`doit new staging/web/frontend/1.3.0 --from 1.2.0`), although
    doit's getopt stops at the first positional one.
    """

    nargs: int | None = 0  # positional arguments the command takes (None: it checks them itself)

    def execute(self, params, args):
        try:
            args = self.interleaved(params, list(args))
            if self.nargs is not None and len(args) != self.nargs:
                raise Usage(f"takes {self.nargs} argument{'s' if self.nargs != 1 else ''} ({self.doc_usage.strip()}); got {len(args)}")
            root = release_root(params)
            problem = root_problem(root)
            if problem:
                raise Usage(problem)
            return self.run(root, params, args)
        except Usage as err:
            self.error(str(err))
            return USAGE_ERROR
        except UserError as err:
            for one in err.each:
                if one.path is None:
                    self.error(one.message)
                else:
                    sys.stderr.write(f"{one}\n")
            return REFUSED
        except PodreleaseError as err:
            self.error(str(err))
            return REFUSED
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            self.error(f"{where}{err.strerror or err}")
            return REFUSED

    def interleaved(self, params, args: list[str]) -> list[str]:
        """Positional arguments, with any options among them parsed into `params`."""
        positional: list[str] = []
        while args:
            if args[0] == "--":
                return positional + args[1:]
            if args[0].startswith("-") and args[0] != "-":
                params, args = self.cmdparser.parse_only(args, params)
            else:
                positional.append(args.pop(0))
        return positional

    def error(self, message: str) -> None:
        sys.stderr.write(f"doit {self.name}: {printable(message)}\n")

    def run(self, root: ReleaseRoot, params, args) -> int:  # pragma: no cover
        raise NotImplementedError


def say(line: str) -> None:
    """One line of progress, flushed: a long cleanup shows what it has done so far."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
