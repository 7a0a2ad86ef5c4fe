"""doit `Task` objects for the one task group a large root has thousands of: releases.

doit's own `Task.__init__` checks and fills some forty attributes per task,
most of them empty lists and sets, in a dictionary too large to share its
keys; at 20,000 releases that was most of a no-op run's memory. A
`LeanTask` keeps in the instance only what differs between tasks or what
doit changes in place (values, pickled attributes), and leaves doit's
defaults to the class. A creator that yields these must yield its group
task first, as `doit.loader` would make it (`group`).

Invariant: a LeanTask is indistinguishable to doit from `Task(**task_dict)`
for dicts with only name, doc, actions, uptodate, task_dep and io=NO_CAPTURE
(tests/plugin/test_doittasks.py compares every attribute).
"""

from __future__ import annotations

from doit.task import IOConfig, Task, first_line


class LeanTask(Task):
    """A subtask with actions, `uptodate` values and task_dep, not capturing output."""

    # doit's defaults for what these tasks never set; doit only reads these
    # (calc_dep is copied by its dispatcher before it changes it)
    params: tuple = ()
    creator_params: list = []
    options = None
    pos_arg = None
    pos_arg_val = None
    setup_tasks: list = []
    io = IOConfig({"capture": False})
    loader = None
    dep_changed = None
    file_dep: frozenset = frozenset()
    wild_dep: list = []
    calc_dep: set = set()
    getargs: dict = {}
    targets: list = []
    has_subtask = False
    result = None
    verbosity = None
    cfg_values = None
    _remove_targets = False
    watch: tuple = ()
    meta = None
    executed = False

    def __init__(self, name: str, actions: list, uptodate: list, task_dep: list, doc: str | None, subtask_of: str):
        self.name = name
        self._actions = actions
        self._action_instances = None
        self.task_dep = task_dep
        self.uptodate: list = [(item, None, None) if isinstance(item, bool) or item is None else (item, [], {}) for item in uptodate]
        self.value_savers: list = []
        self.values: dict = {}
        self.subtask_of = subtask_of
        self.custom_title = None
        self.clean_actions: list = []
        self.teardown: list = []
        self.doc = first_line(doc)


def group(basename: str, doc: str | None) -> Task:
    """The group task of a creator's subtasks, as `doit.loader` makes it."""
    return Task(basename, None, doc=doc, has_subtask=True)


def subtask(parent: Task, name: str, *, actions: list, uptodate: list, task_dep: list, doc: str | None) -> LeanTask:
    """Subtask `<parent>:<name>`, listed in its group."""
    task = LeanTask(f"{parent.name}:{name}", actions, uptodate, task_dep, doc, parent.name)
    parent.task_dep.append(task.name)
    return task
