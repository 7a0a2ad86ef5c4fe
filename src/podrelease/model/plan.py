"""From loaded rules and instructions to a plan: what to build, check and link.

Pure: no file is read or written here. Every cross-file mistake (a rule
that does not exist, a pin for an image the pod doesn't have, two
instructions naming the same version) is found before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.errors import UserError, UserErrors
from ..core.names import Label, did_you_mean, version_key
from .instructions import Instruction, Parameters, Pin
from .rules import BuildFile, ImageRule, PodRule, VolumeMount


@dataclass(frozen=True)
class ImageBuild:
    rule: ImageRule  # effective: with the app inherited from its base, if any
    version: str
    base: ImageBuild | None = None  # built first; its rootfs is where this one starts

    @property
    def name(self) -> str:
        return self.rule.label.join(self.version)


@dataclass(frozen=True)
class ImageRevision:
    """The recorded revision an image version is built from, and who asked for it."""

    revision: str
    shown: str  # the instruction naming it
    line: int | None
    owner: bool  # the instruction's pod version is the image version


@dataclass(frozen=True)
class VolumeCheck:
    label: Label
    version: str
    needed_by: tuple[str, ...]  # `path:line` of each instruction that needs it

    @property
    def name(self) -> str:
        return self.label.join(self.version)


@dataclass(frozen=True)
class PodVolume:
    mount: VolumeMount
    version: str


@dataclass(frozen=True)
class PodAssembly:
    instruction: Instruction
    rule: PodRule
    images: tuple[ImageBuild, ...]
    volumes: tuple[PodVolume, ...]
    parameters: Parameters  # the channel's defaults, then the instruction's

    @property
    def name(self) -> str:
        return f"{self.instruction.channel}/{self.instruction.pod.join(self.instruction.version)}"


@dataclass(frozen=True)
class TipUpdate:
    channel: str
    pod: Label
    yanked: frozenset[str] = frozenset()  # versions out of the running for tip

    @property
    def name(self) -> str:
        return f"{self.channel}/{self.pod.join()}"


@dataclass(frozen=True)
class Release:
    pod: PodAssembly
    tip: TipUpdate

    @property
    def name(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class Plan:
    images: dict[str, ImageBuild]
    volumes: dict[str, VolumeCheck]
    pods: dict[str, PodAssembly]
    tips: dict[str, TipUpdate]
    releases: dict[str, Release]
    revisions: dict[str, ImageRevision] = field(default_factory=dict)  # image build name ->

    def index(self) -> PlanIndex:
        return PlanIndex(
            tuple((name, r.pod.instruction.yanked, r.pod.instruction.reason) for name, r in self.releases.items()),
            self.tips,
            self.revisions,
        )


@dataclass(frozen=True)
class PlanIndex:
    """What a run must know of a plan before it knows whether anything is to be built.

    Small (a few names per release), so it is cached (`model.cache.PlanCache`):
    a run with nothing to build never makes the whole plan. A release's name
    `<channel>/<label_path>/<pod>/<version>` also names its instruction
    (`channels/<name>.yaml`), its pod directory and, without the version,
    its tip.
    """

    releases: tuple[tuple[str, bool, str | None], ...]  # (name, yanked, reason), in instruction path order
    tips: dict[str, TipUpdate]
    revisions: dict[str, ImageRevision]  # image build name -> the revision it is built from


def make_plan(
    build_files: list[BuildFile],
    instructions: list[Instruction],
    channel_defaults: dict[str, Parameters] | None = None,
) -> Plan:
    """Resolve every instruction against the rules; report every bad one."""
    images = {r.label: r for b in build_files for r in b.images.values()}
    pods = {r.label: r for b in build_files for r in b.pods.values()}
    plan = Plan({}, {}, {}, _tips(instructions), {})
    errors: list[UserError] = []
    _check_unique_versions(instructions, errors)
    for instruction in instructions:
        defaults = (channel_defaults or {}).get(instruction.channel, Parameters())
        try:
            _add_release(plan, instruction, images, pods, instruction.parameters.over(defaults))
        except UserError as err:
            errors.append(err)
    if errors:
        raise UserErrors(_distinct(errors))
    return plan


def _distinct(errors: list[UserError]) -> list[UserError]:
    """One line per mistake: a broken pod rule fails every instruction that uses it."""
    seen: set[str] = set()
    kept = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            kept.append(error)
    return kept


def _tips(instructions: list[Instruction]) -> dict[str, TipUpdate]:
    """One tip per channel and pod, knowing which of its versions are yanked."""
    yanked: dict[tuple[str, Label], set[str]] = {}
    for instruction in instructions:
        versions = yanked.setdefault((instruction.channel, instruction.pod), set())
        if instruction.yanked:
            versions.add(instruction.version)
    tips = (TipUpdate(channel, pod, frozenset(versions)) for (channel, pod), versions in yanked.items())
    return {tip.name: tip for tip in tips}


def _need_volume(plan: Plan, label: Label, version: str, needer: str) -> None:
    name = label.join(version)
    known = plan.volumes.get(name)
    needed_by = (known.needed_by if known else ()) + (needer,)
    plan.volumes[name] = VolumeCheck(label, version, needed_by)


def _check_unique_versions(instructions: list[Instruction], errors: list[UserError]) -> None:
    """`1.0` and `1.0.0` are one version: two instructions can't both name it."""
    seen: dict[tuple, Instruction] = {}
    for instruction in instructions:
        key = (instruction.channel, instruction.pod, version_key(instruction.version))
        if key in seen:
            errors.append(UserError(instruction.shown, None, f"same version as {seen[key].shown}: one pod version has one instruction"))
        else:
            seen[key] = instruction


def _add_release(plan: Plan, instruction: Instruction, images: dict, pods: dict, parameters: Parameters) -> None:
    rule = pods.get(instruction.rule)
    if rule is None:
        folder = f"{instruction.rule.path}/" if instruction.rule.path else ""
        raise UserError(instruction.shown, instruction.rule_line,
                        f"no pod rule {instruction.rule} (looked in shipyard/{folder}build.yaml){did_you_mean(str(instruction.rule), pods)}")
    _check_pins(instruction, instruction.images, rule.images, "image")
    _check_pins(instruction, instruction.volumes, tuple(v.label for v in rule.volumes), "volume")
    pod_images = []
    for label in rule.images:
        if label not in images:
            raise UserError(rule.shown, rule.image_line(label),
                            f"pod {rule.label} uses image {label}, which no build file defines{did_you_mean(str(label), images)}")
        build = _image_build(plan, images, label, _version(instruction, instruction.images, label))
        _choose_revision(plan, build, instruction)
        pod_images.append(build)
    pod_volumes = []
    for mount in rule.volumes:
        version = _version(instruction, instruction.volumes, mount.label)
        pin = instruction.pinned(instruction.volumes, mount.label)
        _need_volume(plan, mount.label, version, f"{instruction.shown}:{pin.line}" if pin else instruction.shown)
        pod_volumes.append(PodVolume(mount, version))
    pod = PodAssembly(instruction, rule, tuple(pod_images), tuple(pod_volumes), parameters)
    tip = plan.tips[f"{instruction.channel}/{instruction.pod.join()}"]
    plan.pods[pod.name] = pod
    plan.releases[pod.name] = Release(pod, tip)


def effective_rule(images: dict[Label, ImageRule], label: Label, chain: tuple[Label, ...] = ()) -> ImageRule:
    """The rule of `label` with the app settings it inherits through its `from:` chain."""
    rule = images[label]
    if rule.base is None:
        return rule
    if rule.base in chain + (label,):
        cycle = " -> ".join(str(step) for step in chain + (label, rule.base))
        raise UserError(rule.shown, rule.line, f"image {label} starts from itself: {cycle}")
    if rule.base not in images:
        raise UserError(rule.shown, rule.line, f"image {label} starts from {rule.base}, which no build file defines{did_you_mean(str(rule.base), images)}")
    base = effective_rule(images, rule.base, chain + (label,))
    if base.app is None:
        return rule
    return replace(rule, app=rule.app.over(base.app) if rule.app else base.app)


def _image_build(plan: Plan, images: dict, label: Label, version: str) -> ImageBuild:
    """The build of `label` at `version`, after the builds of its bases (shared, planned once)."""
    name = label.join(version)
    if name not in plan.images:
        rule = effective_rule(images, label)
        base = None
        if rule.base:
            assert rule.base_version is not None  # `from:` sets both or neither
            base = _image_build(plan, images, rule.base, rule.base_version)
        plan.images[name] = ImageBuild(rule, version, base)
    return plan.images[name]


def _choose_revision(plan: Plan, build: ImageBuild, instruction: Instruction) -> None:
    """Which instruction's revision builds an image version.

    The instruction whose pod version is the image version introduced it and
    wins; one that only pins an existing version counts only if no other
    does. Otherwise the first instruction, by path, decides. Yanked
    instructions take no part.

    A base image (`from:`) takes no revision from the images built on it:
    an older revision may not define it at all (the `from:` may be newer
    than the revision), so it is built from its own rule as the build files
    say today, like any image no instruction records a revision for.
    """
    if instruction.revision is None or instruction.yanked:
        # a yanked instruction builds nothing: its revision (perhaps the very
        # reason it was yanked) must neither be looked up nor choose a build
        return
    choice = ImageRevision(instruction.revision, instruction.shown, instruction.revision_line, build.version == instruction.version)
    known = plan.revisions.get(build.name)
    if known is None or (choice.owner and not known.owner):
        plan.revisions[build.name] = choice


def _version(instruction: Instruction, pins: tuple[Pin, ...], label: Label) -> str:
    """Images and volumes default to the pod's version."""
    pin = instruction.pinned(pins, label)
    return pin.version if pin else instruction.version


def _check_pins(instruction: Instruction, pins: tuple[Pin, ...], labels: tuple[Label, ...], what: str) -> None:
    for pin in pins:
        if pin.label not in labels:
            raise UserError(instruction.shown, pin.line,
                            f"{what} {pin.label} is not part of pod rule {instruction.rule}{did_you_mean(str(pin.label), labels)}")
