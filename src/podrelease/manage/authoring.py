"""`doit new` and `doit promote`: release instructions written for people.

Both write one `channels/<channel>/<label_path>/<pod>/<version>.yaml` and
nothing else. Everything that can be wrong (the path, the pod rule, a pin,
an existing instruction, a source that is not released) is found before a
byte is written, and the file appears whole: it is written to a `.tmp-`
sibling, read back by the same loader a release uses, then hard-linked to
its name, which fails rather than overwrite an instruction that appeared
meanwhile.

Refusals that are not about a line of a file are `UserError`s without a
path; the doit glue shows them as `doit <command>: <message>`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core import fsops, git
from ..core.errors import PodJsonError, UserError
from ..core.names import Label, PodVersion, check_ac_name, check_label_path, check_segment, check_version, did_you_mean, quoted, version_key
from ..core.podjson import PodJson, read_pod_json
from ..model import instructions, rules
from ..model.instructions import Instruction, Parameters, Pin
from ..model.layout import INSTRUCTION_SUFFIX, POD_JSON, InstructionPath, ReleaseRoot, scan_channels
from ..model.plan import make_plan

POD_VERSION_FORM = "<channel>/<label_path>/<pod>/<version>"


def refuse(message: str) -> UserError:
    """A refusal of the command itself, not located in a file."""
    return UserError(None, None, message)


# ---------------------------------------------------------------- what a command names


def parse_pod_version(text: str) -> PodVersion:
    """Check a command-line pod version with the rules the instruction loader applies to paths."""
    parts = text.split("/")
    if len(parts) < 3:
        raise refuse(f"{quoted(text)} is not {POD_VERSION_FORM}")
    if parts[-1].endswith((".yaml", ".yml")):
        raise refuse(f"{quoted(text)}: give the version, not the instruction's file name ({POD_VERSION_FORM})")
    try:
        channel = check_segment(parts[0], "channel")
        label_path = check_label_path("/".join(parts[1:-2]))
        pod = check_ac_name(parts[-2], "pod name")
        version = check_version(parts[-1])
    except ValueError as err:
        raise refuse(f"{quoted(text)} is not {POD_VERSION_FORM}: {err}") from None
    return PodVersion(channel, Label(label_path, pod), version)


def parse_channel(text: str) -> str:
    try:
        return check_segment(text, "channel")
    except ValueError as err:
        raise refuse(str(err)) from None


# ---------------------------------------------------------------- the source revision


@dataclass(frozen=True)
class Revision:
    commit: str | None  # None: no git checkout (or no commit yet)
    dirty: bool = False
    note: str | None = None  # why there is no commit, for stderr
    changes: tuple[str, ...] = ()  # `git status --porcelain` lines of what is uncommitted under shipyard/


def source_revision(shipyard: Path) -> Revision:
    """`git rev-parse HEAD` of the checkout holding the build rules, and whether it has changes.

    Only changes under `shipyard/` (modified, staged or untracked files)
    make it dirty: they are what images are built from. The instruction
    being written, other instructions and built artifacts elsewhere in the
    release root do not change what a release builds.
    """
    try:
        head = git.run(shipyard, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except git.GitMissing:
        return Revision(None, note="git is not installed; no revision written")
    if head.returncode != 0:
        inside = git.run(shipyard, "rev-parse", "--is-inside-work-tree")
        if inside.returncode == 0 and inside.stdout.strip() == "true":
            return Revision(None, note="the git checkout of shipyard/ has no commit yet; no revision written")
        said = inside.stderr.strip().splitlines()
        if said and "not a git repository" not in said[-1]:  # e.g. git refusing a checkout of another owner
            return Revision(None, note=f"git cannot read the checkout of shipyard/ ({said[-1]}); no revision written")
        return Revision(None, note="shipyard/ is not in a git checkout; no revision written")
    status = git.run(shipyard, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    if status.returncode != 0:
        raise refuse(f"git status failed in {shipyard}: {status.stderr.strip() or status.returncode}")
    changes = tuple(line.strip() for line in status.stdout.splitlines() if line.strip())
    return Revision(head.stdout.strip(), dirty=bool(changes), changes=changes)


def refuse_dirty(revision: Revision) -> None:
    """Images build from the recorded revision: uncommitted edits would silently be left out."""
    shown = ", ".join(revision.changes[:5]) + (f" and {len(revision.changes) - 5} more" if len(revision.changes) > 5 else "")
    raise refuse(
        f"shipyard/ has uncommitted changes ({shown}); images are built from the recorded revision "
        f"{(revision.commit or '')[:12]}, without them: commit them first, or give --allow-dirty to record `dirty: true`"
    )


# ---------------------------------------------------------------- the channel


def existing_channels(root: ReleaseRoot) -> list[str]:
    try:
        names = os.listdir(root.channels)
    except OSError:
        return []
    return sorted(name for name in names if not name.startswith(".") and (root.channels / name).is_dir())


def check_channel(root: ReleaseRoot, channel: str, new_channel: bool) -> None:
    """A typo must not start a channel: a channel that does not exist yet needs --new-channel."""
    known = existing_channels(root)
    if channel in known or new_channel:
        return
    listed = f"the channels are {', '.join(known)}" if known else "there is no channel yet"
    raise refuse(f"channel {quoted(channel)} does not exist ({listed}){did_you_mean(channel, known)}; "
                 "give --new-channel to start it")


# ---------------------------------------------------------------- the document


def instruction_document(
    rule: Label | None = None,
    revision: str | None = None,
    dirty: bool = False,
    images: dict[Label, str] | None = None,
    volumes: dict[Label, str] | None = None,
    parameters: Parameters = Parameters(),  # noqa: B008 -- frozen dataclass, safe to share
) -> dict:
    """The YAML mapping, keys in a stable order, empty parts left out."""
    document: dict = {}
    if rule is not None:
        document["rule"] = str(rule)
    if revision is not None:
        document["revision"] = revision
    if dirty:
        document["dirty"] = True
    if images:
        document["images"] = {str(label): version for label, version in sorted(images.items())}
    if volumes:
        document["volumes"] = {str(label): version for label, version in sorted(volumes.items())}
    wanted: dict = {}
    if parameters.args:
        wanted["args"] = list(parameters.args)
    if parameters.environment:
        wanted["environment"] = dict(parameters.environment)
    if wanted:
        document["parameters"] = wanted
    return document


def render(document: dict) -> str:
    """YAML text ending in a newline; `{}` for an instruction that says nothing."""
    if not document:
        return "{}\n"
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=math.inf)


def _as_instruction(root: ReleaseRoot, target: PodVersion, document: dict) -> Instruction:
    """The instruction the loader will make of `document`, to plan it before anything is written."""
    path = root.instruction(target.channel, target.pod, target.version)
    rule = Label.parse(document["rule"]) if "rule" in document else target.pod
    return Instruction(
        path=path,
        shown=root.shown(path),
        channel=target.channel,
        pod=target.pod,
        version=target.version,
        rule=rule,
        rule_line=None,
        revision=document.get("revision"),
        dirty=bool(document.get("dirty")),
        images=tuple(Pin(Label.parse(k), v, None) for k, v in document.get("images", {}).items()),
        volumes=tuple(Pin(Label.parse(k), v, None) for k, v in document.get("volumes", {}).items()),
    )


# ---------------------------------------------------------------- writing


def refuse_existing(root: ReleaseRoot, target: PodVersion) -> None:
    """One pod version has one instruction: never overwrite, never shadow a released version."""
    path = root.instruction(target.channel, target.pod, target.version)
    shown = root.shown(path)
    if os.path.lexists(path):
        raise refuse(f"{shown} already exists; instructions are never overwritten (release a new version)")
    pod_dir = root.pod_dir(target.channel, target.pod, target.version)
    if os.path.lexists(pod_dir / POD_JSON):
        raise refuse(f"{root.shown(pod_dir)}/ is already released; pick a new version")
    if os.path.lexists(pod_dir):
        # e.g. `staging/web/frontend` read as pod `web`, version `frontend`
        raise refuse(f"{root.shown(pod_dir)}/ already exists and is not a release of {target.pod} {target.version}; "
                     f"is {quoted(str(target))} really {POD_VERSION_FORM}?")
    home = root.pod_home(target.channel, target.pod)
    try:
        names = os.listdir(home)
    except FileNotFoundError:
        return
    for name in sorted(names):
        if name.startswith(".") or not name.endswith(INSTRUCTION_SUFFIX):
            continue
        other = name[: -len(INSTRUCTION_SUFFIX)]
        try:
            same = version_key(check_version(other)) == version_key(target.version)
        except ValueError:
            continue
        if same:
            raise refuse(f"{shown}: version {target.version} is the same version as {root.shown(home / name)}")


def check_instruction(root: ReleaseRoot, target: PodVersion, document: dict, build_files: list) -> None:
    """Refuse it unless it is new and plans: its rule exists and its pins belong to that rule."""
    refuse_existing(root, target)
    make_plan(build_files, [_as_instruction(root, target, document)])


def write_instruction(root: ReleaseRoot, target: PodVersion, document: dict, build_files: list) -> Path:
    """Check it, then make it appear whole, or not at all."""
    check_instruction(root, target, document, build_files)
    path = root.instruction(target.channel, target.pod, target.version)
    fsops.make_dirs(path.parent)
    fsops.sweep(path.parent)
    tmp = path.parent / fsops.temporary_name(path.name)
    try:
        fsops.write_file(tmp, render(document).encode())
        _fsync(tmp)
        # read back as a release would: what is written is what was planned
        instructions.load_instruction(InstructionPath(tmp, root.shown(path), target.channel, target.pod, target.version))
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise refuse(f"{root.shown(path)} already exists; instructions are never overwritten (release a new version)") from None
        fsops.fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- doit new


@dataclass(frozen=True)
class Written:
    path: Path
    notes: tuple[str, ...] = ()


def new_instruction(root: ReleaseRoot, target: PodVersion, from_version: str | None = None,
                    allow_dirty: bool = False, new_channel: bool = False) -> Written:
    """A new instruction: the source revision, and with `--from` the versions the source used.

    Without `--from` nothing is pinned: every image and volume defaults to
    the new pod version, which is what a new release of code normally is.
    With `--from`, every image and volume is pinned to the version the
    source release used (its pod.json if it is released, else what its
    instruction resolves to), with its rule and parameters: the new version
    is the old one until a pin is changed.
    """
    check_channel(root, target.channel, new_channel)
    build_files = rules.load_all(root)
    rule, parameters = None, Parameters()
    images: dict[Label, str] = {}
    volumes: dict[Label, str] = {}
    if from_version is not None:
        source = _load_from(root, target, from_version)
        rule = source.rule if source.rule != source.pod else None
        images, volumes = versions_used(root, source, build_files)
        parameters = source.parameters
    # the path, the rule and the pins are checked before git is asked anything
    check_instruction(root, target, instruction_document(rule, None, False, images, volumes, parameters), build_files)
    revision = source_revision(root.shipyard)
    if revision.dirty and not allow_dirty:
        refuse_dirty(revision)
    document = instruction_document(rule, revision.commit, revision.dirty, images, volumes, parameters)
    path = write_instruction(root, target, document, build_files)
    return Written(path, (revision.note,) if revision.note else ())


def versions_used(root: ReleaseRoot, source: Instruction, build_files: list) -> tuple[dict[Label, str], dict[Label, str]]:
    """The image and volume versions `source` released with (pod.json), or resolves to if it is pending.

    Only images and volumes the pod rule still names are pinned: a pin for
    one it dropped would not plan.
    """
    pod = next(iter(make_plan(build_files, [source]).pods.values()))
    images = {build.rule.label: build.version for build in pod.images}
    volumes = {volume.mount.label: volume.version for volume in pod.volumes}
    path = root.pod_dir(source.channel, source.pod, source.version) / POD_JSON
    if path.is_file():
        try:
            released = read_pod_json(path, root.shown(path))
        except PodJsonError as err:
            raise refuse(f"--from {source.version}: {err}") from None
        images.update({i.label: i.version for i in released.images if i.label in images})
        volumes.update({v.label: v.version for v in released.volumes if v.label in volumes})
    return images, volumes


def _load_from(root: ReleaseRoot, target: PodVersion, from_version: str) -> Instruction:
    try:
        check_version(from_version, "--from version")
    except ValueError as err:
        raise refuse(str(err)) from None
    path = root.instruction(target.channel, target.pod, from_version)
    if not path.is_file() or path.is_symlink():
        raise refuse(f"--from {from_version}: there is no instruction {root.shown(path)}")
    where = InstructionPath(path, root.shown(path), target.channel, target.pod, from_version)
    return instructions.load_instruction(where)


# ---------------------------------------------------------------- doit promote


def promote(root: ReleaseRoot, source: PodVersion, to_channel: str, new_channel: bool = False) -> Written:
    """The instruction that releases exactly the source's pod in another channel.

    Every image and volume version and the revision come from the source's
    `pod.json`, and each image must still be on disk with the id recorded
    there, so the target release links the very same images and builds
    nothing. The source channel's parameters stay behind: channels differ
    in customization.
    """
    if to_channel == source.channel:
        raise refuse(f"{source} is already in channel {to_channel}")
    check_channel(root, to_channel, new_channel)
    released = _released_pod(root, source)
    instruction = _source_instruction(root, source)
    if instruction is not None and instruction.yanked:
        raise refuse(f"{source} is yanked ({instruction.reason or 'no reason given'}): promote a good version")
    build_files = rules.load_all(root)
    rule = instruction.rule if instruction is not None and instruction.rule != instruction.pod else None
    dirty = instruction.dirty if instruction is not None else False
    target = PodVersion(to_channel, source.pod, source.version)
    document = instruction_document(
        rule=rule,
        revision=released.revision,
        dirty=dirty,
        images={image.label: image.version for image in released.images},
        volumes={volume.label: volume.version for volume in released.volumes},
    )
    _check_same_artifacts(root, target, document, build_files, released)
    _check_images_unchanged(root, released)
    return Written(write_instruction(root, target, document, build_files))


def _released_pod(root: ReleaseRoot, source: PodVersion) -> PodJson:
    pod_dir = root.pod_dir(source.channel, source.pod, source.version)
    path = pod_dir / POD_JSON
    try:
        released = read_pod_json(path, root.shown(path))
    except PodJsonError as err:
        if err.problem == "missing":
            hint = "" if root.pod_home(source.channel, source.pod).is_dir() else did_you_mean(
                f"{source.channel}/{source.pod.join()}", pod_names(root))
            raise refuse(f"{source} is not released ({root.shown(path)} does not exist){hint or f'; release it first: doit release:{source}'}") from None
        raise refuse(f"cannot promote {source}: {err}") from None
    if (released.label, released.channel, released.version) != (source.pod, source.channel, source.version):
        raise refuse(f"{root.shown(path)} describes {released.channel}/{released.label.join(released.version)}, not {source}")
    return released


def pod_names(root: ReleaseRoot) -> list[str]:
    """Every `<channel>/<label_path>/<pod>` in channels/: what a mistyped name may have meant."""
    return [f"{home.channel}/{home.label.join()}" for home in scan_channels(root).homes if home.label is not None]


def _source_instruction(root: ReleaseRoot, source: PodVersion) -> Instruction | None:
    """The source's instruction, for its `rule:` and `dirty:`; a released pod may have outlived it."""
    path = root.instruction(source.channel, source.pod, source.version)
    if not path.is_file():
        return None
    return instructions.load_instruction(InstructionPath(path, root.shown(path), source.channel, source.pod, source.version))


def _check_same_artifacts(root: ReleaseRoot, target: PodVersion, document: dict, build_files: list, released: PodJson) -> None:
    """The pod rule as it is now must name exactly the source's images and volumes.

    A rule that gained an image since would build it at the pod version in
    the target channel: that is a new release, not a promotion.
    """
    plan = make_plan(build_files, [_as_instruction(root, target, document)])
    pod = next(iter(plan.pods.values()))
    planned_images = {(b.rule.label, b.version) for b in pod.images}
    planned_volumes = {(v.mount.label, v.version) for v in pod.volumes}
    extra = sorted(planned_images - {(i.label, i.version) for i in released.images})
    extra += sorted(planned_volumes - {(v.label, v.version) for v in released.volumes})
    if extra:
        label, version = extra[0]
        raise refuse(
            f"pod rule {pod.rule.label} now has {label} {version}, which {target.pod.join(target.version)} "
            f"in channel {released.channel} was not released with; promotion would build something new"
        )


def _check_images_unchanged(root: ReleaseRoot, released: PodJson) -> None:
    """Each image is still on disk with the id pod.json recorded, so the target links it as is."""
    for image in released.images:
        path = root.image_dir(image.label, image.version) / "sha512"
        try:
            digest = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise refuse(f"image {image.label} {image.version} is gone ({root.shown(path)}); promotion would rebuild it") from None
        if digest != image.digest:
            raise refuse(f"image {image.label} {image.version} changed since it was released: {root.shown(path)} is not {image.id[:23]}…")
