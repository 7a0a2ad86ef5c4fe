"""`doit cleanup`: drop old released versions, then what nothing refers to any more.

Three steps, kept apart so the decision can be tested without a disk:

1. `survey` reads the release root: each pod's released versions and tip,
   what every pod directory links to (any channel, any version), every
   image and volume version on disk, and what the instructions not yet
   released will need.
2. `decide` (pure) picks, per channel and pod, the released versions beyond
   the newest N — never the tip, never a protected one — and then the images
   (and with `--volumes`, the volumes) that neither a remaining pod directory
   nor a pending instruction refers to.
3. `remove` carries it out, holding the same per-artifact locks as a
   release. Each directory is renamed to a `.tmp-` sibling (the name
   `fsops.sweep` recognises) before it is deleted, so a reader sees it
   whole or not at all, and a crash leaves only a dot-named leftover that
   the next build or cleanup in that folder sweeps away.

A removed version's instruction is removed too, before its pod directory:
an instruction left behind would be released again by the next `doit`
(rebuilding images this cleanup just removed), and the instruction's text
stays in the history of the git-tracked release root. Removing the
instruction first means a crash in between leaves a pod directory without
an instruction (which `doit verify` accepts, and the next cleanup removes),
never an instruction without its pod directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..build import imaging
from ..core import fsops, locks
from ..core.errors import PodJsonError, UserError
from ..core.names import Label, PodVersion, check_ac_name, check_label_path, check_version, version_key
from ..core.podjson import read_pod_json
from ..model import instructions, rules
from ..model.layout import POD_JSON, ReleaseRoot, scan_channels
from ..model.plan import ImageBuild, make_plan
from .authoring import parse_pod_version, refuse

IMAGE = "image"
VOLUME = "volume"
IMAGE_FILES = imaging.IMAGE_ENTRIES


# ---------------------------------------------------------------- what is on disk


@dataclass(frozen=True, order=True)
class Artifact:
    """An image or volume version: `images/` or `volumes/` + `<label_path>/<name>/<version>`."""

    kind: str  # IMAGE or VOLUME
    label: Label
    version: str

    def path(self, root: ReleaseRoot) -> Path:
        if self.kind == IMAGE:
            return root.image_dir(self.label, self.version)
        return root.volume_dir(self.label, self.version)

    @property
    def lock(self) -> str:
        """The lock name the release tasks use for it."""
        return f"{self.kind}:{self.label.join(self.version)}"


@dataclass(frozen=True)
class PodVersions:
    """One pod in one channel: its released versions (with a pod.json) and its tip."""

    channel: str
    pod: Label
    released: tuple[str, ...]
    tip: str | None


@dataclass(frozen=True)
class Protect:
    """`--protect`: `<channel>/<label_path>/<pod>/<version>`, or a bare version (every channel and pod)."""

    version: str
    channel: str | None = None
    pod: Label | None = None

    def covers(self, release: PodVersion) -> bool:
        return self.version == release.version and (
            self.channel is None or (self.channel, self.pod) == (release.channel, release.pod)
        )

    def __str__(self) -> str:
        if self.channel is None:
            return self.version
        assert self.pod is not None  # `parse_protect` gives a channel only with its pod
        return f"{self.channel}/{self.pod.join(self.version)}"


@dataclass
class Survey:
    pods: list[PodVersions] = field(default_factory=list)
    # what each pod directory (by its path relative to the root) links to or names in its pod.json;
    # directories that are not releases (temporaries of a running release) are listed too
    refs: dict[str, frozenset[Artifact]] = field(default_factory=dict)
    artifacts: set[Artifact] = field(default_factory=set)  # image and volume versions on disk
    needed: set[Artifact] = field(default_factory=set)  # by instructions not released yet


@dataclass(frozen=True)
class Decision:
    pods: tuple[PodVersion, ...]
    artifacts: tuple[Artifact, ...]  # images, and volumes if asked for
    kept_volumes: tuple[Artifact, ...]  # volumes nothing refers to, kept without --volumes
    kept_pods: int

    @property
    def empty(self) -> bool:
        return not (self.pods or self.artifacts)


def parse_protect(text: str) -> Protect:
    if "/" in text:
        release = parse_pod_version(text)
        return Protect(release.version, release.channel, release.pod)
    try:
        return Protect(check_version(text, "--protect version"))
    except ValueError as err:
        raise refuse(f"{err} (--protect takes <channel>/<label_path>/<pod>/<version> or a version)") from None


# ---------------------------------------------------------------- deciding (pure)


def pod_dir_key(release: PodVersion) -> str:
    """How `Survey.refs` names a release's pod directory."""
    return f"channels/{release.channel}/{release.pod.join(release.version)}"


def decide(survey: Survey, keep: int, protect: Iterable[Protect] = (), volumes: bool = False) -> Decision:
    """What goes: old versions per channel and pod, then the artifacts nothing needs any more."""
    protect = tuple(protect)
    doomed: list[PodVersion] = []
    kept = 0
    for pod in survey.pods:
        newest_first = sorted(pod.released, key=version_key, reverse=True)
        for rank, version in enumerate(newest_first):
            release = PodVersion(pod.channel, pod.pod, version)
            if rank < keep or version == pod.tip or any(p.covers(release) for p in protect):
                kept += 1
            else:
                doomed.append(release)
    gone = {pod_dir_key(r) for r in doomed}
    referenced = set(survey.needed)
    for key, refs in survey.refs.items():
        if key not in gone:
            referenced |= refs
    unreferenced = sorted(a for a in survey.artifacts if a not in referenced)
    removed = tuple(a for a in unreferenced if a.kind == IMAGE or volumes)
    kept_volumes = tuple(a for a in unreferenced if a.kind == VOLUME and not volumes)
    return Decision(tuple(sorted(doomed)), removed, kept_volumes, kept)


def unknown_protections(survey: Survey, protect: Iterable[Protect]) -> list[Protect]:
    """Protections that name no released version: a typo must not protect nothing silently."""
    releases = [PodVersion(p.channel, p.pod, v) for p in survey.pods for v in p.released]
    return [p for p in protect if not any(p.covers(r) for r in releases)]


# ---------------------------------------------------------------- surveying


def survey(root: ReleaseRoot) -> Survey:
    """Read everything `decide` needs; refuse a root whose instructions or rules do not load."""
    found = Survey()
    _walk_channels(root, found)
    _find_images(root, found)
    needed, volume_labels = _pending_needs(root, found)
    found.needed = needed
    for refs in found.refs.values():
        volume_labels |= {a.label for a in refs if a.kind == VOLUME}
    _find_volumes(root, found, volume_labels)
    return found


def _walk_channels(root: ReleaseRoot, found: Survey) -> None:
    """Every pod directory's references; each pod home's released versions and tip."""
    for home in scan_channels(root).homes:
        for temporary in home.temporaries:
            try:
                found.refs[root.shown(temporary)] = frozenset(_references(root, temporary))
            except FileNotFoundError:
                continue  # a running release renamed it into place after the walk listed it
        versions = []
        for name, folder in home.pod_dirs.items():
            if os.path.isfile(folder / POD_JSON):
                found.refs[root.shown(folder)] = frozenset(_references(root, folder))
                versions.append(name)
        pod = home.label
        if pod is None or not versions:
            continue  # a folder that is no pod home: its references count, it is never removed
        released = tuple(sorted((v for v in versions if _is_version(v)), key=version_key))
        target = os.readlink(home.tip) if home.tip is not None and home.tip.is_symlink() else None
        found.pods.append(PodVersions(home.channel, pod, released, target))


def _is_version(text: str) -> bool:
    try:
        check_version(text)
    except ValueError:
        return False
    return True


def _references(root: ReleaseRoot, folder: Path) -> set[Artifact]:
    """What a pod directory refers to: by its links, and by what its pod.json names.

    Both count: a link is what a reader follows, pod.json is the record. A
    pod.json that cannot be read stops the cleanup, since nobody can tell
    what it still needs.
    """
    refs = set()
    for entry in os.scandir(folder):
        if entry.is_symlink():
            target = os.path.normpath(os.path.join(folder, os.readlink(entry.path)))
            artifact = _artifact_at(root, Path(target))
            if artifact is not None:
                refs.add(artifact)
    pod_json = folder / POD_JSON
    if pod_json.is_file():
        try:
            refs |= _named_in_pod_json(root, pod_json)
        except UserError:
            if not folder.name.startswith(fsops.TMP_PREFIX):
                raise  # a temporary's pod.json may be half-written: its links count
    return refs


def _named_in_pod_json(root: ReleaseRoot, path: Path) -> set[Artifact]:
    try:
        pod = read_pod_json(path, root.shown(path))
    except PodJsonError as err:
        raise UserError(root.shown(path), None, f"cannot tell what this pod refers to ({err.problem}); cleanup removes nothing until it is repaired (see doit verify)") from None
    return {Artifact(IMAGE, i.label, i.version) for i in pod.images} | {Artifact(VOLUME, v.label, v.version) for v in pod.volumes}


def _artifact_at(root: ReleaseRoot, target: Path) -> Artifact | None:
    for kind, top in ((IMAGE, root.path / "images"), (VOLUME, root.path / "volumes")):
        try:
            parts = target.relative_to(top).parts
        except ValueError:
            continue
        if len(parts) < 2:
            return None
        try:
            label = Label(check_label_path("/".join(parts[:-2])), check_ac_name(parts[-2], f"{kind} name"))
            return Artifact(kind, label, check_version(parts[-1]))
        except ValueError:
            return None
    return None


def _find_images(root: ReleaseRoot, found: Survey) -> None:
    """Every `images/<label_path>/<image>/<version>/` holding an image's files."""
    top = root.path / "images"
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not any(name in IMAGE_FILES for name in filenames):
            continue
        dirnames[:] = []
        artifact = _artifact_at(root, Path(dirpath))
        if artifact is not None:
            found.artifacts.add(artifact)


def _find_volumes(root: ReleaseRoot, found: Survey, labels: set[Label]) -> None:
    """The versions of every volume some rule or pod names (other folders under volumes/ are not volumes we know)."""
    for label in labels:
        home = root.path / "volumes" / label.join()
        try:
            names = os.listdir(home)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if not name.startswith(".") and _is_version(name) and (home / name).is_dir():
                found.artifacts.add(Artifact(VOLUME, label, name))


def _pending_needs(root: ReleaseRoot, found: Survey) -> tuple[set[Artifact], set[Label]]:
    """Images and volumes still needed though no pod directory links them, and every volume label a rule names.

    Needed are what the instructions not released yet will use (an image
    may be the very one a promotion pinned; rebuilt from today's sources it
    could get another id), and every base image a build rule starts from.
    """
    build_files = rules.load_all(root)
    loaded = instructions.load_all(root.instruction_paths())
    defaults = {}
    for channel in sorted({i.channel for i in loaded}):
        path = root.channel_file(channel)
        if path.is_file():
            defaults[channel] = instructions.load_channel_defaults(path, root.shown(path))
    plan = make_plan(build_files, loaded, defaults)
    needed: set[Artifact] = set()
    for pod in plan.pods.values():
        instruction = pod.instruction
        walked = pod_dir_key(PodVersion(instruction.channel, instruction.pod, instruction.version)) in found.refs
        # a pod directory the walk did not see counts as pending, even if a
        # running release has assembled it since: its images are needed
        if instruction.yanked or walked:
            continue
        build: ImageBuild | None
        for build in pod.images:
            while build is not None:  # an image and the bases it is built from
                needed.add(Artifact(IMAGE, build.rule.label, build.version))
                build = build.base
        needed |= {Artifact(VOLUME, v.mount.label, v.version) for v in pod.volumes}
    # a rule's `from: <label>@<version>` names a base image: rebuilt from today's sources it could differ
    needed |= {
        Artifact(IMAGE, rule.base, rule.base_version)
        for b in build_files for rule in b.images.values()
        if rule.base is not None and rule.base_version is not None  # `from:` sets both or neither
    }
    labels = {m.label for b in build_files for p in b.pods.values() for m in p.volumes}
    return needed, labels


# ---------------------------------------------------------------- removing


Say = Callable[[str], None]


def remove(root: ReleaseRoot, decision: Decision, say: Say) -> None:
    """Carry out `decision`, one artifact at a time, under the release's locks."""
    for release in decision.pods:
        _remove_release(root, release, say)
    for artifact in decision.artifacts:
        path = artifact.path(root)
        with locks.holding(root.path, artifact.lock):
            if os.path.isdir(path):
                discard(path)
                say(f"removed {root.shown(path)}/")


def _remove_release(root: ReleaseRoot, release: PodVersion, say: Say) -> None:
    """Instruction first, then the pod directory; never the version tip points at."""
    tip = root.tip(release.channel, release.pod)
    with locks.holding(root.path, f"tip:{release.channel}/{release.pod.join()}"):
        if tip.is_symlink() and os.readlink(tip) == release.version:
            say(f"kept {release}: tip points at it now")
            return
        with locks.holding(root.path, f"pod:{release}"):
            instruction = root.instruction(release.channel, release.pod, release.version)
            if instruction.is_file():
                instruction.unlink()
                fsops.fsync_dir(instruction.parent)
                say(f"removed {root.shown(instruction)}")
            pod_dir = root.pod_dir(release.channel, release.pod, release.version)
            if pod_dir.is_dir():
                discard(pod_dir)
                say(f"removed {root.shown(pod_dir)}/")


def discard(path: Path) -> None:
    """Rename away, then delete: readers never see a half-deleted directory.

    The `.tmp-<name>-<pid>-<random>` name is the one `fsops` gives its
    temporaries, so a leftover of a killed cleanup is swept like theirs.
    """
    aside = path.parent / fsops.temporary_name(path.name)
    os.rename(path, aside)
    fsops.fsync_dir(path.parent)
    shutil.rmtree(aside)


def sweep_leftovers(root: ReleaseRoot) -> None:
    """Remove what killed builds, releases and cleanups left in channels/ and images/.

    Run before the survey, so a dead release's half-assembled pod does not
    keep its images alive. Pod and image directories are not descended
    into: what is inside an artifact is never a leftover.
    """
    for top in (root.channels, root.path / "images"):
        for dirpath, dirnames, filenames in os.walk(top):
            if POD_JSON in filenames or any(name in IMAGE_FILES for name in filenames):
                dirnames[:] = []
                continue
            fsops.sweep(Path(dirpath))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and os.path.isdir(os.path.join(dirpath, d)))


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Options:
    keep: int
    protect: tuple[Protect, ...] = ()
    volumes: bool = False
    dry_run: bool = False


def cleanup(root: ReleaseRoot, options: Options, say: Say) -> Decision:
    """Survey, decide, and (unless a dry run) remove; return what was (or would be) removed."""
    if options.keep < 0:
        raise refuse(f"--keep must be 0 or more (got {options.keep})")
    # a refusal or a dry run writes nothing, not even a lock file: check first, lock after
    found = checked_survey(root, options)
    with nullcontext() if options.dry_run else locks.holding(root.path, "cleanup"):
        if not options.dry_run:
            sweep_leftovers(root)
            found = checked_survey(root, options)  # as it is now that no other cleanup runs
        decision = decide(found, options.keep, options.protect, options.volumes)
        if options.dry_run:
            for line in would_remove(root, decision):
                say(line)
        else:
            remove(root, decision, say)
        return decision


def checked_survey(root: ReleaseRoot, options: Options) -> Survey:
    found = survey(root)
    unknown = unknown_protections(found, options.protect)
    if unknown:
        raise refuse(f"--protect {unknown[0]} names no released pod version")
    return found


def would_remove(root: ReleaseRoot, decision: Decision) -> list[str]:
    lines = []
    for release in decision.pods:
        instruction = root.instruction(release.channel, release.pod, release.version)
        if instruction.is_file():
            lines.append(f"would remove {root.shown(instruction)}")
        lines.append(f"would remove {root.shown(root.pod_dir(release.channel, release.pod, release.version))}/")
    lines += [f"would remove {root.shown(a.path(root))}/" for a in decision.artifacts]
    return lines


def summary(decision: Decision, dry_run: bool) -> str:
    images = sum(a.kind == IMAGE for a in decision.artifacts)
    volumes = sum(a.kind == VOLUME for a in decision.artifacts)
    verb = "would remove" if dry_run else "removed"
    text = (
        f"cleanup: {verb} {_count(len(decision.pods), 'pod version')}, {_count(images, 'image')}, "
        f"{_count(volumes, 'volume')}; kept {_count(decision.kept_pods, 'pod version')}"
    )
    if decision.kept_volumes:
        text += f"; {_count(len(decision.kept_volumes), 'volume')} no pod refers to kept (--volumes removes them)"
    if dry_run:
        text += " (dry run: nothing changed)"
    return text


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
