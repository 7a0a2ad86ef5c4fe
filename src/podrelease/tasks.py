"""The doit glue: a release root's plan as doit tasks.

A release root's dodo.py is one line, `from podrelease.tasks import *`.
Importing this module reads and validates every build file and
instruction, so a mistake stops doit before it opens its state file or
writes anything. Whether a task is up to date is decided from the
artifacts on disk alone, never from doit's state file.
"""

from __future__ import annotations

from pathlib import Path

from . import assembly, imaging, instructions, rules
from .errors import UserError
from .layout import POD_JSON, ReleaseRoot
from .planning import ImageBuild, Plan, PodAssembly, Release, TipUpdate, VolumeCheck, make_plan
from .reporting import ReleaseFailed, ReleaseReporter, exit_with

__all__ = ["DOIT_CONFIG", "task_image", "task_volume", "task_pod", "task_tip", "task_release"]


def load_plan(root: ReleaseRoot) -> Plan:
    build_files = rules.load_all(root)
    return make_plan(build_files, instructions.load_all(root.instruction_paths()))


ROOT = ReleaseRoot.from_environment(Path.cwd())
try:
    PLAN = load_plan(ROOT)
except UserError as error:
    exit_with(error)

DOIT_CONFIG = {
    "default_tasks": ["release"],
    "backend": "sqlite3",  # safe when two doit processes share the state file
    "dep_file": str(ROOT.path / ".doit.db"),
    "reporter": ReleaseReporter,
    # plain `doit list` shows every release with its status (R pending, U released)
    "subtasks": True,
    "status": True,
}


def guarded(work, *args):
    """A doit python-action that turns user mistakes into one-line failures."""

    def action():
        try:
            work(*args)
        except imaging.ImageBuildError as err:
            return ReleaseFailed(str(err), err.output)
        except UserError as err:
            return ReleaseFailed(str(err))
        return None

    action.__name__ = getattr(work, "__name__", "action")
    return action


# ---------------------------------------------------------------- images


def image_built(build: ImageBuild) -> bool:
    return (ROOT.image_dir(build.rule.label, build.version) / "sha512").is_file()


def build_image(build: ImageBuild) -> None:
    if not image_built(build):
        imaging.build_image(build.rule, build.version, ROOT.image_dir(build.rule.label, build.version))


def task_image():
    """Build one image version (shared by every instruction that uses it)."""
    for build in PLAN.images.values():
        yield {
            "name": build.name,
            "actions": [guarded(build_image, build)],
            "uptodate": [image_built(build)],
        }


# ---------------------------------------------------------------- volumes


def volume_present(check: VolumeCheck) -> bool:
    return bool(assembly.volume_files(ROOT, check.label, check.version))


def require_volume(check: VolumeCheck) -> None:
    if not volume_present(check):
        raise assembly.missing_volume(ROOT, check.label, check.version, check.needed_by)


def task_volume():
    """Check one volume version exists (releases never create volumes)."""
    for check in PLAN.volumes.values():
        yield {
            "name": check.name,
            "actions": [guarded(require_volume, check)],
            "uptodate": [volume_present(check)],
        }


# ---------------------------------------------------------------- pods


def pod_dir(pod: PodAssembly) -> Path:
    return ROOT.pod_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)


def task_pod():
    """Assemble one pod directory: pod.json, links to images and volumes, files."""
    for pod in PLAN.pods.values():
        assembled = (pod_dir(pod) / POD_JSON).is_file()
        # an assembled pod is immutable: it needs nothing, even if a volume went away
        needs = [] if assembled else (
            [f"volume:{v.mount.label.join(v.version)}" for v in pod.volumes]
            + [f"image:{b.name}" for b in pod.images]
        )
        yield {
            "name": pod.name,
            "actions": [guarded(assembly.assemble_pod, ROOT, pod)],
            "uptodate": [assembled],
            "task_dep": needs,
        }


# ---------------------------------------------------------------- tips and releases


def task_tip():
    """Point a pod's tip at its highest released version in a channel."""
    for tip in PLAN.tips.values():
        yield {
            "name": tip.name,
            "actions": [guarded(assembly.update_tip, ROOT, tip)],
            "uptodate": [lambda tip=tip: assembly.tip_is_current(ROOT, tip)],
        }


def released(release: Release) -> bool:
    return (pod_dir(release.pod) / POD_JSON).is_file() and assembly.tip_is_current(ROOT, release.tip)


def task_release():
    """Release one instruction: its volumes, images and pod, then its tip."""
    for release in PLAN.releases.values():
        yield {
            "name": release.name,
            "doc": release.pod.instruction.shown,
            # each release moves tip itself: several versions of one pod
            # released in one run must each see the others on disk
            "actions": [guarded(assembly.update_tip, ROOT, release.tip)],
            "uptodate": [lambda release=release: released(release)],
            "task_dep": [f"pod:{release.name}"],
        }
