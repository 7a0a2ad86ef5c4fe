"""podrelease's task loader: doit's `TaskLoader2` seam, registered as the `podrelease` LOADER.

doit hands a loader the command and its arguments; this one finds the
release root (`plugin.root`), reads and plans it (`session.Release.load`,
where a mistake prints one line per bad file and exits 1 before doit opens
its state file), and turns the plan's task creators into doit tasks. A
dodo file, if there is one, is still imported (as doit would), so a root's
own extra tasks keep working beside podrelease's.

Two ways in, one engine:

- a root (or its `pyproject.toml`/`doit.cfg`) that says `loader = "podrelease"`
  under `[tool.doit]` / `[GLOBAL]` gets this loader from doit itself;
- a one-line `dodo.py`, `from podrelease.tasks import *`, gets the same
  creators through doit's default loader (see `podrelease.tasks`).

Only the tasks the command needs are created (`tasks_needed`): `doit` and
`doit info` ask for tasks by name, and get those and what they depend on;
every other command gets every task. Through the dodo file, the creators
find the command on doit's call stack (`doit_command`), since doit's
default loader does not hand it to them.

In a test, `DoitMain(ReleaseLoader()).run([...])` releases a root in-process.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

from doit import loader as doit_loader
from doit.cmd_base import DoitCmdBase, TaskLoader2

from ..core.errors import PodreleaseError
from ..model.layout import ReleaseRoot
from .reporter import ReleaseReporter, exit_with
from .root import ROOT_OPTIONS, dodo_folder, release_root
from .session import CREATORS, Needs, Release

# doit commands whose tasks are the ones named (or the default ones) and their dependencies
SELECTING = ("run", "info")


def doit_config(root: ReleaseRoot) -> dict:
    """The DOIT_CONFIG of a release root."""
    return {
        "default_tasks": ["_volumes", "release"],
        "backend": "podrelease",  # sqlite3, one query to load, safe for concurrent runs
        "dep_file": str(root.path / ".doit.db"),
        "reporter": ReleaseReporter,
        # `doit list --all` shows each task's status (plain `doit list` is podrelease's own)
        "status": True,
    }


def load_release(root: ReleaseRoot) -> Release:
    """The planned root, or one line per mistake on stderr and exit status 1."""
    try:
        return Release.load(root)
    except PodreleaseError as error:  # a user's mistake, or a registry that cannot be asked
        exit_with(error)
        raise  # unreachable: exit_with raises SystemExit


def tasks_needed(release: Release, command) -> Needs | None:
    """What doit's `command` looks at: for `run` and `info`, the tasks it selects and their
    dependencies; for any other command (or none known), every task."""
    if command is None or getattr(command, "name", None) not in SELECTING:
        return None
    selection = getattr(command, "sel_tasks", None)
    return release.needed(list(selection)) if selection else None


def doit_command():
    """The doit command whose `execute` is loading tasks now, found on the call stack; or None.

    doit's default loader calls a dodo file's creators without saying for
    which command; `DoitCmdBase.execute` holds it as `self`. Not found
    (another doit, another caller): None, and every task is made.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is DoitCmdBase.execute.__code__:
            return frame.f_locals.get("self")
        frame = frame.f_back
    return None


def creators(release: Release) -> dict:
    """The release's task creators by name, as a doit namespace."""
    return {name: getattr(release, name) for name in CREATORS}


class ReleaseLoader(TaskLoader2):
    """Release roots as doit tasks."""

    cmd_options = ROOT_OPTIONS

    def __init__(self, root: ReleaseRoot | None = None):
        super().__init__()
        self.root = root
        self.namespace: dict = {}
        self.release: Release | None = None

    def setup(self, opt_values):
        if self.root is None:
            self.root = release_root(opt_values)
        folder = dodo_folder(opt_values.get("dodoFile") or "dodo.py", bool(opt_values.get("seek_file")))
        if folder is not None and os.environ.get("RELEASE_ROOT") is None:
            module = doit_loader.get_module(str(folder / Path(opt_values.get("dodoFile") or "dodo.py").name),
                                            opt_values.get("cwdPath"), False)
            # the root's own creators; podrelease's come from the plan, not from `podrelease.tasks`
            self.namespace = {
                name: ref for name, ref in inspect.getmembers(module)
                if name not in CREATORS and getattr(ref, "__module__", None) != "podrelease.tasks"
            }
        elif self.root is not None:
            os.chdir(self.root.path)

    def load_doit_config(self):
        # doit opens its state file right after this: plan first, so a mistake writes nothing
        self.release = load_release(self.root)
        config = dict(self.namespace.get("DOIT_CONFIG", {}))
        config.update(doit_config(self.root))
        return config

    def load_tasks(self, cmd, pos_args):
        release = self.release or load_release(self.root)
        release.needs = tasks_needed(release, cmd)
        namespace = {**self.namespace, **creators(release)}
        namespace.pop("DOIT_CONFIG", None)
        try:
            return doit_loader.load_tasks(namespace, self.cmd_names, allow_delayed=cmd.execute_tasks,
                                          args=pos_args, config=self.config, task_opts=self.task_opts)
        except PodreleaseError as error:  # e.g. a registry that cannot be asked what it holds
            exit_with(error)
            raise  # unreachable: exit_with raises SystemExit
