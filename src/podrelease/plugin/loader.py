"""The doit glue: a release root's plan as doit tasks.

A release root's dodo.py is one line, `from podrelease.tasks import *`.
Importing this module reads and validates every build file and
instruction, so a mistake stops doit before it opens its state file or
writes anything. Whether a task is up to date is decided from the
artifacts on disk alone, never from doit's state file.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from ..build import assembly
from ..build import bundles
from ..build import imaging
from ..model import instructions
from ..core import locks as locking
from ..build import revisions
from ..model import rules
from ..core.errors import UserError, UserErrors, collect
from ..model.cache import InstructionCache
from ..model.layout import POD_JSON, ReleaseRoot
from ..core.errors import ContractError
from ..model.plan import ImageBuild, Plan, PodAssembly, TipUpdate, VolumeCheck, effective_rule, make_plan
from ..model.rules import ImageRule
from .reporter import ReleaseFailed, ReleaseReporter, exit_with

__all__ = ["DOIT_CONFIG", "task__volumes", "task_image", "task_volume", "task_pod", "task_tip", "task_release", "task_bundle"]


def load_plan(root: ReleaseRoot, cache: InstructionCache) -> tuple[Plan, dict]:
    """The plan, and every image rule by label (for builds from older revisions)."""
    build_files, loaded = collect(
        lambda: rules.load_all(root),
        lambda: instructions.load_all(root.instruction_paths(), cache.load),
    )
    plan = make_plan(build_files, loaded, channel_defaults(root, {i.channel for i in loaded}))
    return plan, {r.label: r for b in build_files for r in b.images.values()}


def channel_defaults(root: ReleaseRoot, channels: set[str]) -> dict:
    """Each channel's `channel.yaml` parameters, where the channel has one."""
    defaults = {}
    for channel in sorted(channels):
        path = root.channel_file(channel)
        if path.is_file():
            defaults[channel] = instructions.load_channel_defaults(path, root.shown(path))
    return defaults


ROOT = ReleaseRoot.from_environment(Path.cwd())


def image_built(build: ImageBuild) -> bool:
    return os.path.isfile(ROOT.image_dir(build.rule.label, build.version) / "sha512")


def resolve_revisions(plan: Plan) -> tuple[Path | None, dict[str, str]]:
    """The commit each pending image is built from; a revision naming none is a user error.

    Only images still to build need git: a no-op run asks it nothing.
    """
    pending = {name: choice for name, choice in plan.revisions.items() if not image_built(plan.images[name])}
    checkout = revisions.checkout_of(ROOT.shipyard) if pending and not revisions.working_tree_forced() else None
    if checkout is None:
        return None, {}
    commits, found, errors = {}, {}, []
    for name, choice in sorted(pending.items()):
        if choice.revision not in found:
            found[choice.revision] = revisions.commit_of(checkout, choice.revision)
        if found[choice.revision] is None:
            errors.append(UserError(choice.shown, choice.line, f"revision {choice.revision!r} is not a commit of the git checkout at {checkout}"))
        commits[name] = found[choice.revision]
    if errors:
        raise UserErrors(list({str(e): e for e in errors}.values()))
    return checkout, commits


try:
    CACHE = InstructionCache(ROOT)
    PLAN, IMAGE_RULES = load_plan(ROOT, CACHE)
    CHECKOUT, COMMITS = resolve_revisions(PLAN)
except UserError as error:
    exit_with(error)
CACHE.save()  # only once everything loaded and planned: a mistake writes nothing

DOIT_CONFIG = {
    "default_tasks": ["_volumes", "release"],
    "backend": "podrelease",  # sqlite3, one query to load, safe for concurrent runs
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
        except (UserError, ContractError) as err:
            return ReleaseFailed(str(err))
        return None

    action.__name__ = getattr(work, "__name__", "action")
    return action


# ---------------------------------------------------------------- images


def build_image(build: ImageBuild) -> None:
    with locking.holding(ROOT.path, f"image:{build.name}"):
        if image_built(build):
            return
        base = ROOT.image_dir(build.base.rule.label, build.base.version) if build.base else None
        target = ROOT.image_dir(build.rule.label, build.version)
        commit = COMMITS.get(build.name)
        if commit is None:
            imaging.build_image(build.rule, build.version, target, base=base, source=working_tree_source(build))
            return
        build_file = ROOT.build_file(build.rule.label.path)
        with revisions.folder_at(CHECKOUT, commit, build_file.parent) as folder:
            rule = rule_at_revision(build, folder / build_file.name, commit)
            imaging.build_image(rule, build.version, target, base=base, source={"revision": commit})


def rule_at_revision(build: ImageBuild, build_file: Path, commit: str) -> ImageRule:
    """The image's rule as its build file said at `commit` (inheriting from today's bases)."""
    shown = f"{commit[:12]}:{ROOT.shown(ROOT.build_file(build.rule.label.path))}"
    at_commit = rules.load_build_file(build_file, shown, build.rule.label.path).images
    if build.rule.label.name not in at_commit:
        raise UserError(shown, None, f"image {build.rule.label} is not defined at revision {commit[:12]}")
    return effective_rule({**IMAGE_RULES, build.rule.label: at_commit[build.rule.label.name]}, build.rule.label)


def working_tree_source(build: ImageBuild) -> dict | None:
    """What build.json says when a recorded revision was skipped on purpose."""
    choice = PLAN.revisions.get(build.name)
    if choice is None or not revisions.working_tree_forced():
        return None
    warning = f"built from the working tree ({revisions.WORKING_TREE_ENV} is set), not from revision {choice.revision}"
    sys.stderr.write(f"{choice.shown}: warning: image {build.rule.label} {build.version} {warning}\n")
    return {"revision": choice.revision, "working_tree": True, "warning": warning}


def task_image():
    """Build one image version (shared by every instruction that uses it)."""
    for build in PLAN.images.values():
        yield {
            "name": build.name,
            "actions": [guarded(build_image, build)],
            "uptodate": [image_built(build)],
            "task_dep": [f"image:{build.base.name}"] if build.base else [],
        }


# ---------------------------------------------------------------- volumes


def volume_present(check: VolumeCheck) -> bool:
    return bool(assembly.volume_files(ROOT, check.label, check.version))


def require_volume(check: VolumeCheck) -> None:
    if not volume_present(check):
        raise assembly.missing_volume(ROOT, check.label, check.version, check.needed_by)


def task__volumes():
    """Check the volumes of every pending release first: a missing one stops plain `doit` before any build."""
    pending = sorted({
        f"volume:{v.mount.label.join(v.version)}"
        for pod in PLAN.pods.values()
        if not pod.instruction.yanked and not os.path.isfile(pod_json_path(pod))
        for v in pod.volumes
    })
    return {"actions": None, "task_dep": pending, "uptodate": [True]}


def task_volume():
    """Check one volume version exists (releases never create volumes)."""
    for check in PLAN.volumes.values():
        yield {
            "name": check.name,
            "actions": [guarded(require_volume, check)],
            "uptodate": [volume_present(check)],
        }


# ---------------------------------------------------------------- pods


@functools.cache
def pod_json_path(pod: PodAssembly) -> str:
    """Asked by the pod, release and bundle tasks of every instruction: made once."""
    return str(ROOT.pod_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version) / POD_JSON)


def task_pod():
    """Assemble one pod directory: pod.json, links to images and volumes, files."""
    for pod in PLAN.pods.values():
        assembled = os.path.isfile(pod_json_path(pod))
        # an assembled pod is immutable: it needs nothing, even if a volume went away
        needs = [] if assembled else (
            [f"volume:{v.mount.label.join(v.version)}" for v in pod.volumes]
            + [f"image:{b.name}" for b in pod.images]
        )
        yield {
            "name": pod.name,
            "actions": [guarded(assemble_pod, pod, PLAN.releases[pod.name].tip)],
            "uptodate": [assembled],
            "task_dep": needs,
        }


# ---------------------------------------------------------------- tips and releases


class TipTargets:
    """Each tip's highest released version, computed once per pod and process.

    Listing a pod's versions for each of its releases would cost versions
    squared; the answer only changes when this process assembles a pod or
    moves a tip, which forget it. (Another process's release moves its own tip.)
    """

    def __init__(self):
        self.known: dict[str, str | None] = {}
        self.links: dict[str, str] = {}

    def target(self, tip: TipUpdate) -> str | None:
        if tip.name not in self.known:
            self.known[tip.name] = assembly.tip_target(ROOT, tip)
        return self.known[tip.name]

    def is_current(self, tip: TipUpdate) -> bool:
        if tip.name not in self.links:
            self.links[tip.name] = str(ROOT.tip(tip.channel, tip.pod))
        try:
            current = os.readlink(self.links[tip.name])
        except OSError:
            current = None
        return current == self.target(tip)

    def forget(self, tip: TipUpdate) -> None:
        self.known.pop(tip.name, None)


TIPS = TipTargets()


def move_tip(tip: TipUpdate) -> None:
    TIPS.forget(tip)
    with locking.holding(ROOT.path, f"tip:{tip.name}"):
        assembly.update_tip(ROOT, tip)


def assemble_pod(pod: PodAssembly, tip: TipUpdate) -> None:
    TIPS.forget(tip)
    with locking.holding(ROOT.path, f"pod:{pod.name}"):
        assembly.assemble_pod(ROOT, pod)


def task_tip():
    """Point a pod's tip at its highest released version in a channel."""
    for tip in PLAN.tips.values():
        yield {
            "name": tip.name,
            "actions": [guarded(move_tip, tip)],
            "uptodate": [lambda tip=tip: TIPS.is_current(tip)],
        }


def released(pod_json: str, tip: TipUpdate, yanked: bool) -> bool:
    """Asked only of releases pending at load time, when they come up: their tip
    target is computed afresh, since a worker process or thread may just have
    assembled a pod this process's cache knows nothing of."""
    TIPS.forget(tip)
    return (yanked or os.path.isfile(pod_json)) and TIPS.is_current(tip)


def task_release():
    """Release one instruction: its volumes, images and pod, then its tip."""
    for release in PLAN.releases.values():
        pod_json = pod_json_path(release.pod)
        instruction = release.pod.instruction
        # a yanked version only leaves the running for tip: nothing is built for it
        assembled = instruction.yanked or os.path.isfile(pod_json)
        # released now stays released during the run (a newer pod only moves
        # tip past it); only a pending release needs asking again when it runs
        done = assembled and TIPS.is_current(release.tip)
        yield {
            "name": release.name,
            "doc": f"yanked: {instruction.reason or 'no reason given'}" if instruction.yanked else instruction.shown,
            # each release moves tip itself: several versions of one pod
            # released in one run must each see the others on disk
            "actions": [guarded(move_tip, release.tip)],
            "uptodate": [True if done else functools.partial(released, pod_json, release.tip, instruction.yanked)],
            # an assembled pod is immutable: only its tip may still need moving
            "task_dep": [] if assembled else [f"pod:{release.name}"],
        }


# ---------------------------------------------------------------- bundles


def write_bundle(pod: PodAssembly) -> None:
    bundle = ROOT.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
    with locking.holding(ROOT.path, f"bundle:{pod.name}"):
        bundles.write_bundle(Path(pod_json_path(pod)).parent, bundle, ROOT.shown(bundle))


def task_bundle():
    """Write a pod's self-contained bundle (releasing the pod first if needed)."""
    for pod in PLAN.pods.values():
        bundle = ROOT.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
        yield {
            "name": pod.name,
            "actions": [guarded(write_bundle, pod)],
            "uptodate": [os.path.isfile(bundle / POD_JSON)],
            "task_dep": [f"release:{pod.name}"],
        }
