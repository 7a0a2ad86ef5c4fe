"""One release root's plan, as doit task dicts, and the work each task does.

A `Release` is made once per doit command by the task loader: it reads and
validates every build file and instruction (`load`), so a mistake stops doit
before it opens its state file or writes anything, and only then does any
task exist. Whether a task is up to date is decided from the artifacts on
disk alone, never from doit's state file.

Large roots: when every build file, channel file and instruction is as an
earlier run saw it, `load` takes the plan's index from the plan cache
(`model.cache.PlanCache`) and reads no instruction; the whole plan is made
only when a task that builds something is asked for. Only the tasks the
command needs are created (`needed`): a no-op `doit` creates one task per
release and no pod, image, volume, tip or bundle task. Either shortcut is
only taken when it gives doit the same tasks for what it will look at.

The task creators (`task_*`) are methods in the order doit lists them; the
actions they hand doit are small methods here that call `podrelease.build`,
each holding the artifact's lock (`core.locks`), so concurrent runs build
each thing once.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core import locks, signing
from ..core.errors import PodreleaseError, UserError, UserErrors, collect, distinct
from ..core.names import quoted
from ..model import instructions, rules
from ..model.cache import InstructionCache, PlanCache
from ..model.instructions import Instruction
from ..model.layout import IMAGE_SHA512, INSTRUCTION_SUFFIX, POD_JSON, ChannelScan, ReleaseRoot, scan_channels
from ..model.plan import ImageBuild, Plan, PlanIndex, PodAssembly, TipUpdate, VolumeCheck, effective_rule, make_plan
from ..model.rules import BuildFile, ImageRule
from ..model.settings import registry_setting
from ..model.tip import released_versions, tip_version
from . import doittasks
from .reporter import WORK_DONE, ReleaseFailed, exit_with

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


def load_plan(root: ReleaseRoot, cache: InstructionCache | None = None, build_files: list[BuildFile] | None = None,
              scan: ChannelScan | None = None) -> tuple[Plan, dict[object, ImageRule]]:
    """The plan, and every image rule by label (for builds from older revisions).

    `build_files` and `scan` are what the caller has already read, if anything.
    """
    build_files, loaded = read_files(root, cache, build_files, scan)
    plan = make_plan(build_files, loaded, channel_defaults(root, {i.channel for i in loaded}))
    return plan, {r.label: r for b in build_files for r in b.images.values()}


def read_files(root: ReleaseRoot, cache: InstructionCache | None = None, build_files: list[BuildFile] | None = None,
               scan: ChannelScan | None = None, found: list[tuple[Path, str]] | None = None,
               ) -> tuple[list[BuildFile], list[Instruction]]:
    """Every build file (those `found`, if given) and instruction, reporting every mistake of both."""
    load = cache.load if cache is not None else None
    found_build_files, loaded = collect(
        (lambda: build_files) if build_files is not None else (lambda: rules.load_all(root, found)),
        lambda: instructions.load_all(root.instruction_paths(scan), load),
    )
    return found_build_files, loaded


def open_remote(root: ReleaseRoot):
    """The root's registry (a `build.publishing.Publisher`), or None: the builders load only if there is one."""
    setting = registry_setting(root.path)
    if setting is None:
        return None
    from ..build import publishing

    return publishing.open_publisher(root, setting)


def _link_text(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def planned_from(root: ReleaseRoot, build_files: list[BuildFile], index: PlanIndex) -> tuple[Plan, dict]:
    """The whole plan, from build files already read and the instruction cache, made again
    when a run needs it: it must be the plan `index` was made from."""
    cache = InstructionCache(root)
    planned = load_plan(root, cache, build_files)
    if planned[0].index() != index:
        raise UserError(root.shown(root.channels), None, "changed while doit was reading it; run doit again")
    cache.save()
    return planned


def loading_done() -> None:
    """Loading is done with the garbage collector off (see `read_root`); once the tasks
    are made, what loading made stays for the whole run, so the collector need never
    look at it again (`gc.freeze`), and collects whatever the run makes."""
    gc.freeze()
    gc.enable()


def work_begins() -> None:
    """Real work has the garbage collector on, whatever loading did."""
    gc.enable()


@dataclass(frozen=True)
class ReadRoot:
    """A release root read and validated as `doit` reads it, before anything is built."""

    index: PlanIndex
    scan: ChannelScan  # channels/, as read
    planner: Callable[[], tuple[Plan, dict]]  # the whole plan and the image rules, when asked
    save: Callable[[], None]  # remember what the caches learnt: call once nothing was wrong


def read_root(root: ReleaseRoot) -> ReadRoot:
    """Read and validate every build file and instruction; raises UserError (one line per mistake).

    When every file is as the plan cache saw it, no instruction is read and
    the whole plan is made only if `planner` is called.

    With the garbage collector off: loading makes hundreds of thousands of
    long-lived objects and no garbage cycles, and a collection pass over
    them every few thousand allocations doubled a large root's load. The
    caller turns it back on (`loading_done`) once it has made what it needs.
    """
    gc.disable()
    try:
        scan = scan_channels(root)
        found = root.build_files()
        plans = PlanCache(root, scan, found)
        remembered = plans.index()
        if remembered is not None:
            build_files = rules.load_all(root, found)  # always read: they name source files that may have gone
            return ReadRoot(remembered, scan, functools.cache(lambda: planned_from(root, build_files, remembered)), lambda: None)
        cache = InstructionCache(root)
        build_files, loaded = read_files(root, cache, scan=scan, found=found)
        index = make_plan(build_files, loaded, channel_defaults(root, {i.channel for i in loaded})).index()
        del loaded  # the plan is made again if a task needs it: a large root's instructions and plan
        # would otherwise stay in memory beside doit's tasks, most often for nothing
    except BaseException:
        gc.enable()  # a mistake ends the command; the host process (a test) goes on
        raise

    def save() -> None:
        cache.save()
        plans.save(index)

    return ReadRoot(index, scan, functools.cache(lambda: planned_from(root, build_files, index)), save)


@dataclass(frozen=True)
class Revisions:
    """Where pending images come from: the git checkout and the commit of each image build."""

    checkout: Path | None
    commits: dict[str, str]


def guarded(work, *args):
    """A doit python-action that turns podrelease errors into one-line failures."""

    def action():
        from ..build.imaging import ImageBuildError

        work_begins()
        try:
            done = work(*args)
        except ImageBuildError as err:
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

    def target(self, tip: TipUpdate, is_file: Callable[[str], bool] = os.path.isfile) -> str | None:
        if tip.name not in self.known:
            # `build.assembly.tip_target`'s rule, without importing the builders
            self.known[tip.name] = tip_version(released_versions(self.root.pod_home(tip.channel, tip.pod), is_file), tip.yanked)
        return self.known[tip.name]

    def is_current(self, tip: TipUpdate, is_file: Callable[[str], bool] = os.path.isfile) -> bool:
        """Whether the tip link points at its target; `is_file` answers for pod.json files."""
        if tip.name not in self.links:
            self.links[tip.name] = str(self.root.tip(tip.channel, tip.pod))
        try:
            current = os.readlink(self.links[tip.name])
        except OSError:
            current = None
        return current == self.target(tip, is_file)

    def forget(self, tip: TipUpdate) -> None:
        self.known.pop(tip.name, None)


# Task groups with subtasks, by creator; `_volumes` is a single task.
GROUPS = ("image", "volume", "pod", "tip", "release", "bundle")

# The tasks a command needs, by group: None for every task of the group,
# else the names of the ones needed (after the `group:`); a group that is
# not a key gets no task. None instead of the whole dict: every task.
Needs = dict[str, set[str] | None]


class Release:
    """The release root `root`, planned: task creators and their actions."""

    def __init__(self, root: ReleaseRoot, index: PlanIndex, planner: Callable[[], tuple[Plan, dict]], sources: Revisions):
        self.root = root
        self.index = index
        self.planner = planner
        self.planned: tuple[Plan, dict] | None = None
        self.sources = sources
        self.tips = TipTargets(root)
        self.needs: Needs | None = None  # every task, unless the loader says what the command needs
        self.channels = str(root.channels)
        self.images = str(root.path / "images")
        self.found: dict[str, bool] = {}  # pod.json files, as they were when tasks were made
        self.remote = None  # the root's registry (`build.publishing.Publisher`), if it has one
        self.signing_key = signing.signing_key()  # None: pods are released unsigned

    def found_at_start(self, path: str) -> bool:
        """Whether a file existed when the tasks were made: asked several times per release
        while making them (pending? its volumes? its tip?), looked at once.
        Never for what actions do: they look again."""
        found = self.found.get(path)
        if found is None:
            found = self.found[path] = os.path.isfile(path)
        return found

    @classmethod
    def load(cls, root: ReleaseRoot) -> Release:
        """Read, validate and plan everything; raises UserError (one line per mistake).

        The caches are saved only once everything loaded and planned: a
        mistake writes nothing.
        """
        key = signing.signing_key()
        if key is not None and not key.is_file():
            raise UserError(str(key), None, f"no such file ({signing.KEY_ENV} names the key that signs pods)")
        read = read_root(root)
        release = cls(root, read.index, read.planner, Revisions(None, {}))
        release.remote = open_remote(root)
        release.ask_registry()
        release.sources = release.resolve_revisions()
        read.save()
        return release

    def whole_plan(self) -> tuple[Plan, dict]:
        """The plan and the image rules, made when first asked for (the index tells what exists)."""
        if self.planned is None:
            try:
                self.planned = self.planner()
            except UserError as error:  # a file changed since the index was checked
                exit_with(error)
                raise  # unreachable: exit_with raises SystemExit
        return self.planned

    @property
    def plan(self) -> Plan:
        return self.whole_plan()[0]

    @property
    def image_rules(self) -> dict:
        """Every image rule by label (for builds from older revisions)."""
        return self.whole_plan()[1]

    # ------------------------------------------------------------ what is on disk, or in the registry

    def ask_registry(self) -> None:
        """With a registry: ask it at once about every pod and tip, and every image git would be asked about."""
        if self.remote is None:
            return
        self.remote.prefetch(pods=[self.remote.pod_of(name) for name, _, _ in self.index.releases],
                             tips=list(self.index.tips.values()))
        images = [name for name in self.index.revisions if not self.image_named_built(name)]
        if images:
            self.remote.prefetch(images=[(b.rule.label, b.version) for b in map(self.plan.images.__getitem__, images)])

    def present_at_start(self, release: str) -> bool:
        """Whether a release's pod was assembled, here or in the registry, when the tasks were made."""
        return self.found_at_start(self.pod_json(release)) or (self.remote is not None and self.remote.has_release(release))

    def image_built(self, build: ImageBuild) -> bool:
        """Built here, or in the registry (restored when a local step needs it)."""
        return self.image_present(build.name)

    def image_present(self, name: str) -> bool:
        """Image `<label_path>/<image>/<version>` built here, or in the registry."""
        return self.image_named_built(name) or (self.remote is not None and self.remote.has_image_named(name))

    def ensure_image(self, build: ImageBuild) -> None:
        """An image a local step needs, restored from the registry if only there."""
        if self.remote is not None and not self.image_named_built(build.name):
            with locks.holding(self.root.path, f"image:{build.name}"):
                self.remote.ensure_image(build.rule.label, build.version)

    def image_named_built(self, name: str) -> bool:
        """`name` is `<label_path>/<image>/<version>`, as `root.image_dir` makes it."""
        return os.path.isfile(f"{self.images}/{name}/{IMAGE_SHA512}")

    def pod_json(self, name: str) -> str:
        """The pod.json of release `name` (`<channel>/<label_path>/<pod>/<version>`), as `root.pod_dir` makes it."""
        return f"{self.channels}/{name}/{POD_JSON}"

    def pod_json_path(self, pod: PodAssembly) -> str:
        return self.pod_json(pod.name)

    def pod_done(self, name: str) -> bool:
        """Release `name`'s pod is assembled, and signed if this run signs (a key set
        later adds the missing signature, nothing else), as it was when tasks were made.
        A pod only in the registry is restored as it was published, signed or not."""
        if not self.present_at_start(name):
            return False
        pod_json = self.pod_json(name)
        if self.signing_key is None or not self.found_at_start(pod_json):
            return True
        return os.path.lexists(os.path.join(os.path.dirname(pod_json), signing.SIGNATURE_NAME))

    def volume_present(self, check: VolumeCheck) -> bool:
        from ..build import assembly

        if assembly.volume_files(self.root, check.label, check.version, checked=False):
            return True
        return self.remote is not None and self.remote.has_volume(check.label, check.version)

    def resolve_revisions(self) -> Revisions:
        """The commit each pending image is built from; a revision naming none is a user error.

        Only images still to build need git: a no-op run asks it nothing.
        """
        pending = {name: choice for name, choice in self.index.revisions.items() if not self.image_present(name)}
        if not pending:
            return Revisions(None, {})
        from ..build import revisions

        checkout = None if revisions.working_tree_forced() else revisions.checkout_of(self.root.shipyard)
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
                errors.append(UserError(choice.shown, choice.line, f"revision {quoted(choice.revision)} is not a commit of the git checkout at {checkout}"))
            else:
                commits[name] = commit
        if errors:
            raise UserErrors(distinct(errors))
        return Revisions(checkout, commits)

    # ------------------------------------------------------------ which tasks a command needs

    def needed(self, selection: list[str] | None) -> Needs | None:
        """The tasks doit looks at to run `selection` (task names): those and all they depend on.

        None (every task) for anything this cannot follow: a pattern, a
        task option, a task that is not podrelease's or does not exist, so
        doit itself decides (and words any error) as it always did.
        """
        if selection is None:
            return None
        whole: set[str] = set()
        chosen: dict[str, set[str]] = {}
        seen: set[str] = set()
        todo = list(selection)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            group, colon, sub = name.partition(":")
            if "*" in name or name.startswith("-") or (group not in GROUPS and name != "_volumes"):
                return None
            if name == "_volumes":
                whole.add(name)
                todo.extend(self.pending_volumes())
            elif not colon:
                whole.add(group)
                todo.extend(self.group_dependencies(group))
            elif self.exists(group, sub):
                chosen.setdefault(group, set()).add(sub)
                todo.extend(self.dependencies(group, sub))
            else:
                return None
        needs: Needs = {group: None for group in whole}
        needs.update((group, subs) for group, subs in chosen.items() if group not in whole)
        return needs

    def exists(self, group: str, sub: str) -> bool:
        if group in ("release", "pod", "bundle"):
            return sub in self.yanked
        if group == "tip":
            return sub in self.index.tips
        return sub in (self.plan.images if group == "image" else self.plan.volumes)

    @functools.cached_property
    def yanked(self) -> dict[str, bool]:
        """Whether each release (by name) is yanked."""
        return {name: yanked for name, yanked, _ in self.index.releases}

    def pending(self, name: str) -> bool:
        """A release that is neither yanked nor assembled (a pod directory with a pod.json,
        here or in the registry, and its pod.json.sig when this run signs)."""
        return not self.yanked[name] and not self.pod_done(name)

    def dependencies(self, group: str, sub: str) -> list[str]:
        """The task_dep of task `group:sub`, as its creator below gives them."""
        if group == "release":
            return [f"pod:{sub}"] if self.pending(sub) else []
        if group == "bundle":
            return [f"release:{sub}"]
        if group == "pod":
            if self.present_at_start(sub):
                return []
            pod = self.plan.pods[sub]
            return [f"volume:{v.mount.label.join(v.version)}" for v in pod.volumes] + [f"image:{b.name}" for b in pod.images]
        if group == "image":
            base = self.plan.images[sub].base
            return [f"image:{base.name}"] if base else []
        return []

    def group_dependencies(self, group: str) -> list[str]:
        """The task_dep of every task of a group."""
        if group == "release":
            return [f"pod:{name}" for name, _, _ in self.index.releases if self.pending(name)]
        if group == "bundle":
            return [f"release:{name}" for name, _, _ in self.index.releases]
        if group in ("pod", "image"):
            names = self.plan.pods if group == "pod" else self.plan.images
            return [dep for sub in names for dep in self.dependencies(group, sub)]
        return []

    def pending_volumes(self) -> list[str]:
        """The volume tasks of every pending release: what `_volumes` checks first."""
        pending = [name for name, yanked, _ in self.index.releases if not yanked and not self.present_at_start(name)]
        if not pending:
            return []  # nothing to release: the plan need not be made
        pods = self.plan.pods
        return sorted({f"volume:{v.mount.label.join(v.version)}" for name in pending for v in pods[name].volumes})

    def wanted(self, group: str) -> set[str] | None | Literal[False]:
        """False: no task of `group`; None: all of them; else the names of those needed."""
        if self.needs is None:
            return None
        return self.needs.get(group, False)

    # ------------------------------------------------------------ images

    def build_image(self, build: ImageBuild) -> dict:
        if build.base is not None:
            self.ensure_image(build.base)
        with locks.holding(self.root.path, f"image:{build.name}"):
            if self.image_built(build):
                return {}  # another run built (or pushed) it meanwhile
            self.build_image_here(build)
            if self.remote is not None:
                self.remote.push_image(build.rule.label, build.version)
            return {WORK_DONE: "image"}

    def build_image_here(self, build: ImageBuild) -> None:
        """Build the image from its recorded revision if it has one, else from the working tree."""
        from ..build import imaging, revisions

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
        from ..build import imaging

        if rule.base is None or rule.base_version is None:
            return None
        base = self.root.image_dir(rule.base, rule.base_version)
        if self.remote is not None and not (base / imaging.SHA512_FILE).is_file() and self.remote.has_image(rule.base, rule.base_version):
            with locks.holding(self.root.path, f"image:{rule.base.join(rule.base_version)}"):
                self.remote.ensure_image(rule.base, rule.base_version)
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
        from ..build import revisions

        choice = self.plan.revisions.get(build.name)
        if choice is None or not revisions.working_tree_forced():
            return None
        warning = f"built from the working tree ({revisions.WORKING_TREE_ENV} is set), not from revision {choice.revision}"
        sys.stderr.write(f"{choice.shown}: warning: image {build.rule.label} {build.version} {warning}\n")
        return {"revision": choice.revision, "working_tree": True, "warning": warning}

    def picked(self, group: str, tasks: dict) -> list:
        """The values of `tasks` (by subtask name) the command needs, in plan order."""
        want = self.wanted(group)
        if want is False:
            return []
        return list(tasks.values()) if want is None else [task for name, task in tasks.items() if name in want]

    def task_image(self):
        """Build one image version (shared by every instruction that uses it)."""
        for build in self.picked("image", self.plan.images) if self.wanted("image") is not False else ():
            yield {
                "name": build.name,
                "actions": [guarded(self.build_image, build)],
                "io": NO_CAPTURE,
                # with a registry, asked only if doit looks at this task
                "uptodate": [self.image_named_built(build.name) or (self.remote is not None and functools.partial(self.image_built, build))],
                "task_dep": [f"image:{build.base.name}"] if build.base else [],
            }

    # ------------------------------------------------------------ volumes

    def require_volume(self, check: VolumeCheck) -> None:
        """The volume version exists, and holds only files a release may publish."""
        from ..build import assembly

        if not assembly.volume_files(self.root, check.label, check.version):
            raise assembly.missing_volume(self.root, check.label, check.version, check.needed_by)

    def task__volumes(self):
        """Check the volumes of every pending release first: a missing one stops plain `doit` before any build."""
        if self.wanted("_volumes") is False:
            return None
        return {"actions": None, "task_dep": self.pending_volumes(), "uptodate": [True]}

    def task_volume(self):
        """Check one volume version exists (releases never create volumes)."""
        for check in self.picked("volume", self.plan.volumes) if self.wanted("volume") is not False else ():
            yield {
                "name": check.name,
                "actions": [guarded(self.require_volume, check)],
                "io": NO_CAPTURE,
                "uptodate": [functools.partial(self.volume_present, check) if self.remote is not None else self.volume_present(check)],
            }

    # ------------------------------------------------------------ pods

    def assemble_pod(self, pod: PodAssembly, tip: TipUpdate) -> dict:
        from ..build import assembly

        self.tips.forget(tip)
        if self.remote is not None:
            for build in pod.images:
                self.ensure_image(build)
            for volume in pod.volumes:
                with locks.holding(self.root.path, f"volume:{volume.mount.label.join(volume.version)}"):
                    self.remote.ensure_volume(volume.mount.label, volume.version)
        with locks.holding(self.root.path, f"pod:{pod.name}"):
            if os.path.isfile(self.pod_json_path(pod)):
                # assembled before (or by another run meanwhile): only its signature may be missing
                if self.signing_key is not None:
                    assembly.sign_pod(self.root, pod, self.signing_key)
                return {}
            assembly.assemble_pod(self.root, pod, self.signing_key)
        if self.remote is not None:
            self.push_bases(pod)
            with locks.holding(self.root.path, f"pod:{pod.name}"):
                self.remote.push_pod(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
        return {WORK_DONE: "pod"}

    def task_pod(self):
        """Assemble one pod directory: pod.json, links to images and volumes, files."""
        for pod in self.picked("pod", self.plan.pods) if self.wanted("pod") is not False else ():
            assembled = self.present_at_start(pod.name)
            # an assembled pod is immutable: it needs nothing, even if a volume went away
            needs = [] if assembled else (
                [f"volume:{v.mount.label.join(v.version)}" for v in pod.volumes]
                + [f"image:{b.name}" for b in pod.images]
            )
            yield {
                "name": pod.name,
                "actions": [guarded(self.assemble_pod, pod, self.plan.releases[pod.name].tip)],
                "io": NO_CAPTURE,
                "uptodate": [self.pod_done(pod.name)],
                "task_dep": needs,
            }

    # ------------------------------------------------------------ tips and releases

    def move_tip(self, tip: TipUpdate) -> dict:
        """Point tip where the tip rule says; a move prints `tip <channel>/<pod>: <old> -> <new>`."""
        from ..build import assembly

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

    def publish(self, release: str, tip: TipUpdate) -> dict:
        """Move tip here; with a registry, push the pod if it is only here, then move the tip tag."""
        moved = self.move_tip(tip)
        if self.remote is None:
            return moved
        version = release.rpartition("/")[2]
        if not self.yanked[release] and os.path.isfile(self.pod_json(release)) and not self.remote.has_pod(tip.channel, tip.pod, version):
            pod = self.plan.pods[release]
            self.push_bases(pod)
            with locks.holding(self.root.path, f"pod:{release}"):
                self.remote.push_pod(tip.channel, tip.pod, version)
        elif self.signature_unpublished(release, tip):
            with locks.holding(self.root.path, f"pod:{release}"):
                self.remote.push_signature(tip.channel, tip.pod, version)
        self.remote.point_tip(tip)
        return moved

    def signature_unpublished(self, release: str, tip: TipUpdate) -> bool:
        """A pod signed here whose signature the registry lacks (it was pushed before a key was set)."""
        assert self.remote is not None
        version = release.rpartition("/")[2]
        return (not self.yanked[release] and self.remote.signed_here(tip.channel, tip.pod, version)
                and not self.remote.has_signature(tip.channel, tip.pod, version))

    def push_bases(self, pod: PodAssembly) -> None:
        """The bases of a pod's images, which pod.json does not name, so a runner building on them finds them."""
        assert self.remote is not None
        for build in pod.images:
            base = build.base
            while base is not None:
                if self.image_named_built(base.name) and not self.remote.has_image(base.rule.label, base.version):
                    self.remote.push_image(base.rule.label, base.version)
                base = base.base

    def published(self, release: str, tip: TipUpdate) -> bool:
        """With a registry: the release's pod is there (unless yanked), and so is its tip."""
        if self.remote is None:
            return True
        if not self.yanked[release] and not self.remote.has_release(release):
            return False
        return not self.signature_unpublished(release, tip) and self.remote.tip_is_current(tip)

    def task_tip(self):
        """Point a pod's tip at its highest released version in a channel."""
        for tip in self.picked("tip", self.index.tips):
            yield {
                "name": tip.name,
                "actions": [guarded(self.move_tip, tip)],
                "io": NO_CAPTURE,
                "uptodate": [functools.partial(self.tips.is_current, tip)],
            }

    def released(self, release: str, tip: TipUpdate, yanked: bool) -> bool:
        """Asked only of releases pending at load time, when they come up: their tip
        target is computed afresh, since a worker process or thread may just have
        assembled a pod this process's cache knows nothing of.

        A registry that cannot be asked makes the release run: its action then
        fails with the registry's one-line reason."""
        self.tips.forget(tip)
        try:
            present = yanked or os.path.isfile(self.pod_json(release)) or (self.remote is not None and self.remote.has_release(release))
            return present and self.tips.is_current(tip) and self.published(release, tip)
        except PodreleaseError:
            return False

    def task_release(self):
        """Release one instruction: its volumes, images and pod, then its tip."""
        want = self.wanted("release")
        if want is False:
            return
        # thousands of these: lean doit tasks (plugin.doittasks), their group first
        releases = doittasks.group("release", Release.task_release.__doc__)
        yield releases
        tips = self.index.tips
        current: dict[str, bool] = {}  # by tip: nothing moves a tip while tasks are made
        for name, yanked, reason in self.index.releases:
            if want is not None and name not in want:
                continue
            tip_name = name.rpartition("/")[0]
            tip = tips[tip_name]
            # a yanked version only leaves the running for tip: nothing is built for it
            assembled = yanked or self.present_at_start(name)
            # released now stays released during the run (a newer pod only moves
            # tip past it); only a pending release needs asking again when it runs
            if assembled and tip_name not in current:
                current[tip_name] = self.tips.is_current(tip, self.found_at_start)
            # a pod this run signs is asked again after it is signed: the signature may need pushing
            done = assembled and current[tip_name] and (self.remote is None or (self.published(name, tip) and not self.pending(name)))
            yield doittasks.subtask(
                releases, name,
                doc=f"yanked: {reason or 'no reason given'}" if yanked else f"channels/{name}{INSTRUCTION_SUFFIX}",
                # each release moves tip itself: several versions of one pod
                # released in one run must each see the others on disk
                actions=[guarded(self.publish, name, tip)],
                uptodate=[True if done else functools.partial(self.released, name, tip, yanked)],
                # an assembled pod is immutable: only its tip may still need moving
                # (and its signature, when this run signs and it has none)
                task_dep=[f"pod:{name}"] if self.pending(name) else [],
            )
        self.found.clear()  # the largest thing loading leaves behind: doit's run needs the memory

    # ------------------------------------------------------------ bundles

    def write_bundle(self, pod: PodAssembly) -> None:
        from ..build import bundles

        instruction = pod.instruction
        if instruction.yanked:
            # a bundle is carried to machines that cannot see the instruction: say it here
            sys.stderr.write(f"{instruction.shown}: warning: bundling {instruction.pod} {instruction.version}, which is yanked "
                             f"({instruction.reason or 'no reason given'})\n")
        bundle = self.root.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
        if self.remote is not None:
            with locks.holding(self.root.path, f"pod:{pod.name}"):
                self.remote.ensure_pod(instruction.channel, instruction.pod, instruction.version)
            self.move_tip(self.plan.releases[pod.name].tip)  # a restored pod may be the newest here
        with locks.holding(self.root.path, f"bundle:{pod.name}"):
            bundles.write_bundle(Path(self.pod_json_path(pod)).parent, bundle, self.root.shown(bundle))

    def bundle_done(self, pod: PodAssembly, bundle: Path) -> bool:
        """Written, with the pod's signature if it has one (or this run signs)."""
        if not os.path.isfile(bundle / POD_JSON):
            return False
        signed = self.signing_key is not None or os.path.lexists(
            os.path.join(os.path.dirname(self.pod_json_path(pod)), signing.SIGNATURE_NAME))
        return not signed or os.path.lexists(bundle / signing.SIGNATURE_NAME)

    def task_bundle(self):
        """Write a pod's self-contained bundle (releasing the pod first if needed)."""
        for pod in self.picked("bundle", self.plan.pods) if self.wanted("bundle") is not False else ():
            bundle = self.root.bundle_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
            yield {
                "name": pod.name,
                "actions": [guarded(self.write_bundle, pod)],
                "io": NO_CAPTURE,
                "uptodate": [self.bundle_done(pod, bundle)],
                "task_dep": [f"release:{pod.name}"],
            }
        loading_done()  # the last creator doit calls (they are called in the order they are defined)


# The order doit lists task groups in (it sorts creators by where they are defined).
CREATORS = ("task_image", "task__volumes", "task_volume", "task_pod", "task_tip", "task_release", "task_bundle")
