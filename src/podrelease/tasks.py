"""`from podrelease.tasks import *`: the one line of a release root's dodo.py.

doit's default loader imports the dodo file, takes `DOIT_CONFIG` and calls
every `task_*` creator. Importing this module reads nothing. doit reads
`DOIT_CONFIG` right before it opens its state file, and that read loads and
plans the root (`plugin.session.Release`), so a mistake prints its lines
and stops doit before anything is written; every creator then asks that one
plan. The release root is the dodo file's folder (doit runs there), or
`RELEASE_ROOT`. The first creator doit calls finds the command on doit's
call stack, so only the tasks that command needs are made (see
`plugin.loader`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from .model.layout import ReleaseRoot
from .plugin.loader import doit_command, doit_config, load_release, tasks_needed

__all__ = ["DOIT_CONFIG", "task_image", "task__volumes", "task_volume", "task_pod", "task_tip", "task_release", "task_bundle"]

@functools.cache
def _planned():
    return load_release(ReleaseRoot.from_environment(Path.cwd()))


@functools.cache
def _release():
    """The planned root, knowing (from the first creator doit calls) which tasks to make."""
    release = _planned()
    release.needs = tasks_needed(release, doit_command())
    return release


class _PlannedConfig(dict):
    """doit's configuration of the root, planning the root when doit first reads it."""

    def items(self):
        _planned()
        return super().items()


DOIT_CONFIG = _PlannedConfig(doit_config(ReleaseRoot.from_environment(Path.cwd())))


def task_image():
    """Build one image version (shared by every instruction that uses it)."""
    return _release().task_image()


def task__volumes():
    """Check the volumes of every pending release first: a missing one stops plain `doit` before any build."""
    return _release().task__volumes()


def task_volume():
    """Check one volume version exists (releases never create volumes)."""
    return _release().task_volume()


def task_pod():
    """Assemble one pod directory: pod.json, links to images and volumes, files."""
    return _release().task_pod()


def task_tip():
    """Point a pod's tip at its highest released version in a channel."""
    return _release().task_tip()


def task_release():
    """Release one instruction: its volumes, images and pod, then its tip."""
    return _release().task_release()


def task_bundle():
    """Write a pod's self-contained bundle (releasing the pod first if needed)."""
    return _release().task_bundle()
