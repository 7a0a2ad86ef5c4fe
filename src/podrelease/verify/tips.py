"""Tips: every pod with a released version has a `tip`.

`tip` is a symlink to the highest released version (numeric order) whose
instruction is not `yanked` (`model.tip.tip_version`, the one tip rule); a
pod whose every released version is yanked has no tip. A version is released
when its pod directory holds a `pod.json`.
"""

from __future__ import annotations

import os

from ..core.names import check_version, quoted
from ..model.layout import POD_JSON, TIP
from ..model.tip import tip_version
from .report import Problems
from .scan import Home, Scan


def check_tip(scan: Scan, problems: Problems, home: Home) -> None:
    """tip -> the highest released version that is not yanked; no tip if there is none."""
    released = {
        name: pod for name, pod in home.pod_dirs.items()
        if _version_or_none(name) is not None and (pod.path / POD_JSON).is_file()
    }
    tip = home.tip or home.folder / TIP
    if not released and home.tip is None:
        return
    scan.checked["tips"] += 1
    highest = tip_version(released, home.yanked)
    if home.tip is None:
        if highest is not None and not home.unreadable:
            problems.report("tip", tip, f"missing: should point at {highest}, the highest released version")
        return
    if not tip.is_symlink():
        problems.report("tip", tip, "is not a symlink")
        return
    target = os.readlink(tip)
    if not os.path.exists(tip):
        problems.report("tip", tip, f"points at {quoted(target)}, which does not exist{_should(highest)}")
    elif "/" in target or target not in home.pod_dirs:
        problems.report("tip", tip, f"points at {quoted(target)}, which is not a version of this pod{_should(highest)}")
    elif target not in released:
        problems.report("tip", tip, f"points at {quoted(target)}, which is not released (no pod.json){_should(highest)}")
    elif home.unreadable:
        return  # which versions are yanked is unknown: an instruction did not load (reported)
    elif target in home.yanked:
        problems.report("tip", tip, f"points at {target}, which is yanked{_should(highest)}")
    elif highest is None:
        problems.report("tip", tip, f"points at {quoted(target)}, but no released version of this pod is left: there should be no tip")
    elif target != highest:
        problems.report("tip", tip, f"points at {target}, but the highest released version is {highest}")


def _version_or_none(text: object) -> str | None:
    try:
        return check_version(text)
    except ValueError:
        return None


def _should(highest: str | None) -> str:
    if highest is None:
        return "; every released version is yanked, so there should be no tip"
    return f"; the highest released version is {highest}"
