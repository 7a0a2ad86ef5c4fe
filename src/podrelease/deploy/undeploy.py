"""`undeploy`: remove an installed version, and the images no other version uses.

The version directory and the unused image directories are renamed into a
staging directory first (one rename each, so each disappears whole) and
removed from there; the pod's directory goes too once it has no version left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..core.errors import ContractError
from ..core.fsops import fsync_dir, sweep
from ..core.names import Label
from .history import read_history, write_history
from .layout import CURRENT, HISTORY, Layout, current, read_pod
from .records import read_record


def undeploy(layout: Layout, label: Label, version: str, force: bool, say: Callable[[str], None]) -> str:
    """Remove the installed `version` of `label`; returns what was done. DIR must be locked."""
    pod_dir = layout.pod_dir(label)
    final = pod_dir / version
    is_current = current(pod_dir) == version
    if is_current and not force:
        raise ContractError(
            f"{label} {version} is the current version; activate another one first, or use --force"
        )
    record = read_record(final) or {}
    ids = set(record.get("images", {}).values())
    pod = read_pod(final)
    if pod is not None:
        ids |= {i.id for i in pod.images}
    staging = layout.staging("undeploy")
    try:
        if is_current:
            (pod_dir / CURRENT).unlink()
        os.rename(final, staging / "version")
        write_history(pod_dir, [v for v in read_history(pod_dir) if v != version])
        fsync_dir(pod_dir)
        removed = _drop_unused_images(layout, ids, staging, say)
        _prune(layout, pod_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    message = f"undeployed {label} {version}"
    if removed:
        message += f" and {len(removed)} image{'s' if len(removed) != 1 else ''} no other pod uses"
    if is_current:
        message += f"; {label} has no current version now"
    return message


def _drop_unused_images(layout: Layout, candidates: set[str], staging: Path,
                        say: Callable[[str], None]) -> list[str]:
    """Move the `candidates` no installed version uses into `staging`; returns their ids."""
    used: set[str] = set()
    for vdir in layout.version_dirs():
        record = read_record(vdir)
        pod = read_pod(vdir)
        if record is None and pod is None:
            say(f"cannot tell which images {vdir} uses; keeping every image")
            return []
        if record is not None:
            used |= set(record.get("images", {}).values())
        if pod is not None:
            used |= {i.id for i in pod.images}
    removed = []
    for image_id in sorted(candidates - used):
        target = layout.image_dir(image_id)
        if target.is_dir():
            os.rename(target, staging / image_id)
            removed.append(image_id)
    if removed:
        fsync_dir(layout.images)
    return removed


def _prune(layout: Layout, pod_dir: Path) -> None:
    """Remove a pod's directory once no version is left, and empty parents up to pods/."""
    if _versions_left(pod_dir):
        return
    sweep(pod_dir)
    (pod_dir / HISTORY).unlink(missing_ok=True)
    path = pod_dir
    while path != layout.pods and path != layout.root:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def _versions_left(pod_dir: Path) -> list[str]:
    """Every version-like entry of a pod directory, recorded or not."""
    try:
        return [e.name for e in os.scandir(pod_dir) if e.name != CURRENT and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
