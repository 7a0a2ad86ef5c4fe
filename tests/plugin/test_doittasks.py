"""Lean doit tasks (plugin.doittasks) are, to doit, the tasks its own loader makes from the same dicts."""

from __future__ import annotations

import functools
import pickle

from doit.loader import generate_tasks

from podrelease.plugin import doittasks
from podrelease.plugin.session import NO_CAPTURE


def work():
    return None


def released() -> bool:
    return True


def as_doit_makes_them(dicts):
    def creator():
        """Release one instruction."""
        yield from (dict(d, io=NO_CAPTURE) for d in dicts)
    return generate_tasks("release", creator(), creator.__doc__)


def as_podrelease_makes_them(dicts):
    def creator():
        group = doittasks.group("release", "Release one instruction.")
        yield group
        for d in dicts:
            yield doittasks.subtask(group, d["name"], actions=d["actions"], uptodate=d["uptodate"], task_dep=d["task_dep"], doc=d["doc"])
    return generate_tasks("release", creator(), "Release one instruction.")


DICTS = [
    {"name": "prod/web/1.0.0", "doc": "channels/prod/web/1.0.0.yaml", "actions": [work], "uptodate": [True], "task_dep": []},
    {"name": "prod/web/1.1.0", "doc": "yanked: broken\nsecond line", "actions": [work],
     "uptodate": [functools.partial(released)], "task_dep": ["pod:prod/web/1.1.0"]},
]


def attributes(task) -> dict:
    names = set(vars(task)) | {name for name in dir(task) if not name.startswith("__") and not callable(getattr(type(task), name, None))}
    found = {}
    for name in sorted(names):
        value = getattr(task, name)
        if name == "io":
            value = value.capture
        elif name == "uptodate":
            value = [(item if isinstance(item, bool) else getattr(item, "func", item), args, kwargs) for item, args, kwargs in value]
        elif name == "actions":
            value = [type(action).__name__ for action in value]
        elif isinstance(value, (set, frozenset)):
            value = sorted(value)
        found[name] = value
    return found


def test_lean_tasks_have_every_attribute_doit_gives_its_own():
    theirs, ours = as_doit_makes_them(DICTS), as_podrelease_makes_them(DICTS)
    assert [t.name for t in ours] == [t.name for t in theirs] == ["release", "release:prod/web/1.0.0", "release:prod/web/1.1.0"]
    for mine, doits in zip(ours, theirs, strict=True):
        assert attributes(mine) == attributes(doits)


def test_lean_tasks_pickle_for_worker_processes_as_doit_tasks_do():
    task = as_podrelease_makes_them(DICTS)[1]
    task.uptodate = [(True, None, None)]  # callables in uptodate never go to a worker
    copy = pickle.loads(pickle.dumps(task))
    assert copy.name == task.name and copy.task_dep == task.task_dep and copy.io.capture is False
    assert set(task.pickle_safe_dict()) == set(doittasks.LeanTask("x", [], [], [], None, "release").pickle_safe_dict())
