"""One release root's plan, as doit task dicts, and the work each task does.

A `Release` is made once per doit command by the task loader: it reads and
validates every build file and instruction (`load`), so a mistake stops doit
before it opens its state file or writes anything, and only then does any
task exist. Whether a task is up to date is decided from the artifacts on
disk alone, never from doit's state file.

The task creators (`task_*`) are methods in the order doit lists them; the
actions they hand doit are small methods here that call `podrelease.build`,
each holding the artifact's lock (`core.locks`), so concurrent runs build
each thing once.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..build import assembly, bundles, imaging, revisions
from ..core import locks
from ..core.errors import PodreleaseError, UserError, UserErrors, collect, distinct
from ..model import instructions, rules
from ..model.cache import InstructionCache
from ..model.instructions import Instruction
from ..model.layout import POD_JSON, ReleaseRoot
from ..model.plan import ImageBuild, Plan, PodAssembly, TipUpdate, VolumeCheck, effective_rule, make_plan
from ..model.rules import BuildFile, ImageRule
from .reporter import WORK_DONE, ReleaseFailed

# doit's default capture swaps the process-wide sys.stdout and sys.stderr for
# each python-action; with `-P thread` concurrent actions restore each other's
# streams out of order, so sys.stderr ends as a chain of capture writers that
# grows with every task run, and flushing it at interpreter exit overflows the
# stack (exit status 120). podrelease reports its own failures (ReleaseFailed)
# and never needs doit's capture: its tasks leave the streams alone.
NO_CAPTURE = {"capture": False}


def channel_defaults(root: ReleaseRoot, channels: set[str]) -> dict:
    """Each channel's `channel.yaml` parameters, where the channel has one."""
    defaults = {}
    for channel in sorted(channels):
        path = root.channel_file(channel)
        if path.is_file():
            defaults[channel] = instructions.load_channel_defaults(path, root.shown(path))
    return defaults


def load_plan(root: ReleaseRoot, cache: InstructionCache | None = None) -> tuple[Plan, dict[object, ImageRule]]:
    """The plan, and every image rule by label (for builds from older revisions)."""
    load = cache.load if cache is not None else None
    build_files: list[BuildFile]
    loaded: list[Instruction]
    build_files, loaded = collect(
        lambda: rules.load_all(root),
        lambda: instructions.load_all(root.instruction_paths(), load),
    )
    plan = make_plan(build_files, loaded, channel_defaults(root, {i.channel for i in loaded}))
    return plan, {r.label: r for b in build_files for r in b.images.values()}


def _link_text(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


@dataclass(frozen=True)
class Revisions:
    """Where pending images come from: the git checkout and the commit of each image build."""

    checkout: Path | None
    commits: dict[str, str]


def guarded(work, *args):
    """A doit python-action that turns podrelease errors into one-line failures."""

    def action():
        try:
            done = work(*args)
        except imaging.ImageBuildError as err:
            return ReleaseFailed(str(err), err.output)
        except PodreleaseError as err:
            return ReleaseFailed(str(err))
        # what the work did, as doit task values: the reporter's summary counts them
        # (values come back from a `-P process` worker; printed lines need not)
        return done if isinstance(done, dict) else None

    action.__name__ = getattr(work, "__name__", "action")
    return action


class TipTargets:
    """Each tip's highest released version, computed once per pod and process.

    Listing a pod's versions for each of its releases would cost versions
    squared; the answer only changes when this process assembles a pod or
    moves a tip, which forget it. (Another process's release moves its own tip.)
    """

    def __init__(self, root: ReleaseRoot):
        self.root = root
        self.known: dict[str, str | None] = {}
        self.links: dict[str, str] = {}

    def target(self, tip: TipUpdate) -> str | None:
        if tip.name not in self.known:
            self.known[tip.name] = assembly.tip_target(self.root, tip)
        return self.known[tip.name]

    def is_current(self, tip: TipUpdate) -> bool:
        if tip.name not in self.links:
            self.links[tip.name] = str(self.root.tip(tip.channel, tip.pod))
        try:
            current = os.readlink(self.links[tip.name])
        except OSError:
            current = None
        return current == self.target(tip)

    def forget(self, tip: TipUpdate) -> None:
        self.known.pop(tip.name, None)


class Release:
    """The release root `root`, planned: task creators and their actions."""

    def __init__(self, root: ReleaseRoot, plan: Plan, image_rules: dict, sources: Revisions):
        self.root = root
        self.plan = plan
        self.image_rules = image_rules
        self.sources = sources
        self.tips = TipTargets(root)

    @classmethod
    def load(cls, root: ReleaseRoot) -> Release:
        """Read, validate and plan everything; raises UserError (one line per mistake).

        The instruction cache is saved only once everything loaded and
        planned: a mistake writes nothing.
        """
        cache = InstructionCache(root)
        plan, image_rules = load_plan(root, cache)
        release = cls(root, plan, image_rules, Revisions(None, {}))
        release.sources = release.resolve_revisions()
        cache.save()
        return release

    # ------------------------------------------------------------ what is on disk

    def image_built(self, build: ImageBuild) -> bool:
        return os.path.isfile(self.root.image_dir(build.rule.label, build.version) / imaging.SHA512_FILE)

    @functools.cache  # noqa: B019 -- one Release per doit run: the cache may keep it alive
    def pod_json_path(self, pod: PodAssembly) -> str:
        """Asked by the pod, release and bundle tasks of every instruction: made once."""
        return str(self.root.pod_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version) / POD_JSON)

    def volume_present(self, check: VolumeCheck) -> bool:
        return bool(assembly.volume_files(self.root, check.label, check.version, checked=False))

    def resolve_revisions(self) -> Revisions:
        """The commit each pending image is built from; a revision naming none is a user error.

        Only images still to build need git: a no-op run asks it nothing.
        """
        pending = {name: choice for name, choice in self.plan.revisions.items() if not self.image_built(self.plan.images[name])}
        checkout = revisions.checkout_of(self.root.shipyard) if pending and not revisions.working_tree_forced() else None
        if checkout is None:
            return Revisions(None, {})
        commits: dict[str, str] = {}
        found: dict[str, str | None] = {}
        errors = []
        for name, choice in sorted(pending.items()):
            if choice.revision not in found:
                found[choice.revision] = revisions.commit_of(checkout, choice.revision)
            commit = found[choice.revision]
            if commit is None:
                errors.append(UserError(choice.shown, choice.line, f"revision {choice.revision!r} is not a commit of the git checkout at {checkout}"))
            else:
                commits[name] = commit
        if errors:
            raise UserErrors(distinct(errors))
        return Revisions(checkout, commits)

    # ------------------------------------------------------------ images

    def build_image(self, build: ImageBuild) -> dict:
        with locks.holding(self.root.path, f"image:{build.name}"):
            if self.image_built(build):
                return {}  # another run built it meanwhile
            self.build_image_here(build)
            return {WORK_DONE: "image"}

    def build_image_here(self, build: ImageBuild) -> None:
        """Build the image from its recorded revision if it has one, else from the working tree."""
        target = self.root.image_dir(build.rule.label, build.version)
        commit = self.sources.commits.get(build.name)
        if commit is None or self.sources.checkout is None:
            base = self.root.image_dir(build.base.rule.label, build.base.version) if build.base else None
            imaging.build_image(build.rule, build.version, target, base=base, source=self.working_tree_source(build))
            return
        build_file = self.root.build_file(build.rule.label.path)
        with revisions.folder_at(self.sources.checkout, commit, build_file.parent) as folder:
            rule = self.rule_at_revision(build, folder / build_file.name, commit)
            try:
                imaging.build_image(rule, build.version, target, base=self.base_at_revision(rule, commit), source={"revision": commit})
            except imaging.ImageBuildError as err:
                # the working tree is not what failed: say so, or a fix there looks ignored
                choice = self.plan.revisions[build.name]
                err.message += (f" (built from revision {commit[:12]}, recorded at {choice.shown}:{choice.line}, not from the "
                                f"working tree; commit a fix and release a new version, or {revisions.WORKING_TREE_ENV}=1 to try "
                                "the working tree)")
                raise

    def base_at_revision(self, rule: ImageRule, commit: str) -> Path | None:
        """The built base the rule names at `commit` (which may be none, or another than today's)."""
        if rule.base is None or rule.base_version is None:
            return None
        base = self.root.image_dir(rule.base, rule.base_version)
        if not (base / imaging.SHA512_FILE).is_file():
            raise UserError(rule.shown, rule.line, f"image {rule.label} at revision {commit[:12]} starts from "
                            f"{rule.base}@{rule.base_version}, which is not built; release an instruction that uses it")
        return base

    def rule_at_revision(self, build: ImageBuild, build_file: Path, commit: str) -> ImageRule:
        """The image's rule as its build file said at `commit` (inheriting from today's bases)."""
        shown = f"{commit[:12]}:{self.root.shown(self.root.build_file(build.rule.label.path))}"
        at_commit = rules.load_build_file(build_file, shown, build.rule.label.path).images
        if build.rule.label.name not in at_commit:
            raise UserError(shown, None, f"image {build.rule.label} is not defined at revision {commit[:12]}")
        return effective_rule({**self.image_rules, build.rule.label: at_commit[build.rule.label.name]}, build.rule.label)

    def working_tree_source(self, build: ImageBuild) -> dict | None:
        """What build.json says when a recorded revision was skipped on purpose."""
        choice = self.plan.revisions.get(build.name)
        if choice is None or not revisions.working_tree_forced():
            return None
        warning = f"built from the working tree ({revisions.WORKING_TREE_ENV} is set), not from revision {choice.revision}"
        sys.stderr.write(f"{choice.shown}: warning: image {build.rule.label} {build.version} {warning}\n")
        return {"revision": choice.revision, "working_tree": True, "warning": warning}

    def task_image(self):
        """Build one image version (shared by every instruction that uses it)."""
        for build in self.plan.images.values():
            yield {
                "name": build.name,
                "actions": [guarded(self.build_image, build)],
                "io": NO_CAPTURE,
                "uptodate": [self.image_built(build)],
                "task_dep": [f"image:{build.base.name}"] if build.base else [],
            }

    # ------------------------------------------------------------ volumes

    def require_volume(self, check: VolumeCheck) -> None:
        """The volume version exists, and holds only files a release may publish."""
        if not assembly.volume_files(self.root, check.label, check.version):
            raise assembly.missing_volume(self.root, check.label, check.version, check.needed_by)

    def task__volumes(self):
        """Check the volumes of every pending release first: a missing one stops plain `doit` before any build."""
        pending = sorted({
            f"volume:{v.mount.label.join(v.version)}"
            for pod in self.plan.pods.values()
            if not pod.instruction.yanked and not os.path.isfile(self.pod_json_path(pod))
            for v in pod.volumes
        })
        return {"actions": None, "task_dep": pending, "uptodate": [True]}

    def task_volume(self):
        """Check one volume version exists (releases never create volumes)."""
        for check in self.plan.volumes.values():
            yield {
                "name": check.name,
                "actions": [guarded(self.require_volume, check)],
                "io": NO_CAPTURE,
                "uptodate": [self.volume_present(check)],
            }

    # ------------------------------------------------------------ pods

    def assemble_pod(self, pod: PodAssembly, tip: TipUpdate) -> dict:
        self.tips.forget(tip)
        with locks.holding(self.root.path, f"pod:{pod.name}"):
            if os.path.isfile(self.pod_json_path(pod)):
                return {}  # another run assembled it meanwhile
            assembly.assemble_pod(self.root, pod)
            return {WORK_DONE: "pod"}

    def task_pod(self):
        """Assemble one pod directory: pod.json, links to images and volumes, files."""
        for pod in self.plan.pods.values():
            assembled = os.path.isfile(self.pod_json_path(pod))
            # an assembled pod is immutable: it needs nothing, even if a volume went away
            needs = [] if assembled else (
                [f"volume:{v.mount.label.join(v.version)}" for v in pod.volumes]
                + [f"image:{b.name}" for b in pod.images]
            )
            yield {
                "name": pod.name,
                "actions": [guarded(self.assemble_pod, pod, self.plan.releases[pod.name].tip)],
                "io": NO_CAPTURE,
                "uptodate": [assembled],
                "task_dep": needs,
            }

    # ------------------------------------------------------------ tips and releases

    def move_tip(self, tip: TipUpdate) -> dict:
        """Point tip where the tip rule says; a move prints `tip <channel>/<pod>: <old> -> <new>`."""
        self.tips.forget(tip)
        link = self.root.tip(tip.channel, tip.pod)
        with locks.holding(self.root.path, f"tip:{tip.name}"):
            before = _link_text(link)
            assembly.update_tip(self.root, tip)
            after = _link_text(link)
        if before == after:
            return {}
        sys.stdout.write(f"tip {tip.name}: {before or '(none)'} -> {after or '(none)'}\n")
        sys.stdout.flush()
        return {WORK_DONE: "tip"}

    def task_tip(self):
        """Point a pod's tip at its highest released version in a channel."""
        for tip in self.plan.tips.values():
            yield {
                "name": tip.name,
                "actions": [guarded(self.move_tip, tip)],
                "io": NO_CAPTURE,
                "uptodate": [functools.partial(self.tips.is_current, tip)],
            }

    def released(self, pod_json: str, tip: TipUpdate, yanked: bool) -> bool:
        """Asked only of releases pending at load time, when they come up: their tip
        target is computed afresh, since a worker process or thread may just have
        assembled a pod this process's cache knows nothing of."""
        self.tips.forget(tip)
        return (yanked or os.path.isfile(pod_json)) and self.tips.is_current(tip)

    def task_release(self):
        """Release one instruction: its volumes, images and pod, then its tip."""
        for release in self.plan.releases.values():
            pod_json = self.pod_json_path(release.pod)
            instruction = release.pod.instruction
            # a yanked version only leaves the running for tip: nothing is built for it
            assembled = instruction.yanked or os.path.isfile(pod_json)
            # released now stays released during the run (a newer pod only moves
            # tip past it); only a pending release needs asking again when it runs
            done = assembled and self.tips.is_current(release.tip)
            yield {
                "name": release.name,
                "doc": f"yanked: {instruction.reason or 'no reason given'}" if instruction.yanked else instruction.shown,
                # each release moves tip itself: several versions of one pod
                # released in one run must each see the others on disk
                "actions": [guarded(self.move_tip, release.tip)],
                "io": NO_CAPTURE,
                "uptodate": [True if done else functools.partial(self.released, pod_json, release.tip, instruction.yanked)],
                # an assembled pod is immutable: only its tip may still need moving
                "task_dep": [] if assembled else [f"pod:{release.name}"],
            }

    # ------------------------------------------------------------ bundles

    def write_bundle(self, pod: PodAssembly) -> None:
        instruction = pod.instruction
        if instruction.yanked:
            # a bundle is carried to machines that cannot see the instruction: say it here
            sys.stderr.write(f"{instruction.shown}: warning: bundling {instruction.pod} {instruction.version}, which is yanked "
                             f"({instruction.reason or 'no reason given'})\n")
        bundle = self.root.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
        with locks.holding(self.root.path, f"bundle:{pod.name}"):
            bundles.write_bundle(Path(self.pod_json_path(pod)).parent, bundle, self.root.shown(bundle))

    def task_bundle(self):
        """Write a pod's self-contained bundle (releasing the pod first if needed)."""
        for pod in self.plan.pods.values():
            bundle = self.root.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
            yield {
                "name": pod.name,
                "actions": [guarded(self.write_bundle, pod)],
                "io": NO_CAPTURE,
                "uptodate": [os.path.isfile(bundle / POD_JSON)],
                "task_dep": [f"release:{pod.name}"],
            }


# The order doit lists task groups in (it sorts creators by where they are defined).
CREATORS = ("task_image", "task__volumes", "task_volume", "task_pod", "task_tip", "task_release", "task_bundle")
