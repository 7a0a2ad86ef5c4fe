"""`current` and `.history.json`: which version of a pod is active, and which were before.

`current` is a symbolic link to a version directory's name, replaced by
renaming a new link over it. `.history.json` lists the versions that were
current before, oldest first, each at most once; `rollback` goes back to the
newest one still installed.

Crash safety: the history is written before `current` is swapped, and
restored if the swap fails. A crash in between leaves the history one step
ahead of `current`: it may already name the current version (which
`point_current` and `roll_back` both skip), or already lack the version a
rollback was going back to; `current` itself is always a complete link.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.fsops import replace_file, replace_symlink
from ..core.podjson import json_bytes
from .layout import CURRENT, HISTORY, current


def read_history(pod_dir: Path) -> list[str]:
    """The versions that were current before, oldest first; [] when there is no readable history."""
    try:
        history = json.loads((pod_dir / HISTORY).read_bytes())
    except (OSError, ValueError):
        return []
    return [v for v in history if isinstance(v, str)] if isinstance(history, list) else []


def write_history(pod_dir: Path, history: list[str]) -> None:
    """Replace the history atomically; an empty one is removed."""
    path = pod_dir / HISTORY
    if not history:
        path.unlink(missing_ok=True)
        return
    replace_file(path, json_bytes(history))


def point_current(pod_dir: Path, version: str, push: bool = True) -> str | None:
    """Make `version` current; the previous current goes on the history unless `push` is off.

    Returns the version that was current before (None if none was).
    """
    old = current(pod_dir)
    if old == version:
        return old
    saved = read_history(pod_dir)
    history = [v for v in saved if v != version]
    if push and old is not None:
        history = [v for v in history if v != old] + [old]
    write_history(pod_dir, history)
    try:
        replace_symlink(pod_dir / CURRENT, version)
    except BaseException:
        write_history(pod_dir, saved)
        raise
    return old


def roll_back(pod_dir: Path, installed: list[str]) -> str | None:
    """Make current the newest version of the history that is installed and not current.

    Returns that version, or None (and changes nothing) when there is none. The
    entries skipped on the way (not installed, or current) leave the history,
    and so does the version rolled back to: `current` is not pushed onto it.
    """
    now = current(pod_dir)
    history = read_history(pod_dir)
    while history:
        candidate = history.pop()
        if candidate != now and candidate in installed:
            write_history(pod_dir, history + [candidate])
            point_current(pod_dir, candidate, push=False)
            return candidate
    return None
