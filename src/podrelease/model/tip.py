"""The tip rule: `tip` points at the highest released version that is not yanked.

One place for it, so releasing, verifying and cleaning up always agree.
Versions order by their numeric parts (`names.version_key`: 1.10.0 > 1.9.0).
A version counts as released when its pod directory holds a `pod.json`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ..core.names import check_version, version_key
from .layout import POD_JSON, TIP


def tip_version(released: Iterable[str], yanked: Iterable[str] = ()) -> str | None:
    """The version tip points at: the highest released one not yanked (None: no tip)."""
    out = set(yanked)
    candidates = [v for v in released if v not in out]
    return max(candidates, key=version_key) if candidates else None


def released_versions(pod_home: str | os.PathLike, is_file: Callable[[str], bool] = os.path.isfile) -> list[str]:
    """Versions with a pod directory holding a pod.json, whatever the instructions say now.

    `is_file` answers for `<pod_home>/<version>/pod.json` (a caller may know already).
    """
    home = os.fspath(pod_home)
    try:
        names = os.listdir(home)
    except FileNotFoundError:
        return []
    versions = []
    for name in names:
        if name.startswith(".") or name == TIP or not is_file(f"{home}/{name}/{POD_JSON}"):
            continue
        try:
            versions.append(check_version(name))
        except ValueError:
            continue
    return versions
