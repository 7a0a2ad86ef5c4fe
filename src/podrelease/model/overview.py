"""What is released, pending and yanked, and where each tip points: `doit list` and `doit status`.

Read from the release root alone, without the plan: one walk of
`channels/` (`layout.scan_channels`, the one scanner), the instructions
(through a loader the caller gives, such as the instruction cache), a
stat of each pod directory's pod.json and one readlink per tip. An
instruction that does not load is a mistake, one line each.

A version is *released* when its pod directory holds a pod.json
(`model.tip`'s definition), or when the root's registry holds it (the
`elsewhere` the caller gives: versions by channel and pod), *pending* when its instruction is not yanked
and it is not released, and *yanked* when its instruction says so. Where
tip should point is `model.tip.tip_version` of the released versions
without the yanked ones; a pod directory whose instruction was deleted
still counts for tip, as it does for `doit` (its yanking cannot be known).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..core.errors import UserError, UserErrors
from ..core.names import Label, did_you_mean, quoted, version_key
from . import instructions
from .instructions import Instruction
from .layout import INSTRUCTION_SUFFIX, POD_JSON, ChannelScan, InstructionPath, ReleaseRoot, scan_channels
from .tip import tip_version

TASK_PREFIX = "release:"


@dataclass(frozen=True)
class VersionStatus:
    version: str
    released: bool  # its pod directory holds a pod.json
    yanked: bool
    reason: str | None  # why it was yanked
    instruction: str | None  # the instruction's path as shown; None: its instruction was deleted

    @property
    def pending(self) -> bool:
        return not self.released and not self.yanked and self.instruction is not None


@dataclass(frozen=True)
class PodStatus:
    channel: str
    pod: Label
    tip: str | None  # what the tip link says now (None: no tip)
    tip_target: str | None  # where the tip rule says it should point
    versions: tuple[VersionStatus, ...]  # lowest version first

    @property
    def name(self) -> str:
        """`<channel>/<label_path>/<pod>`, as in task names and tip lines."""
        return f"{self.channel}/{self.pod.join()}"

    @property
    def released(self) -> list[str]:
        return [v.version for v in self.versions if v.released and not v.yanked]

    @property
    def pending(self) -> list[str]:
        return [v.version for v in self.versions if v.pending]

    @property
    def yanked(self) -> list[VersionStatus]:
        return [v for v in self.versions if v.yanked]

    @property
    def tip_moves(self) -> bool:
        return self.tip != self.tip_target

    def newest(self) -> str | None:
        """The highest released, not yanked version: what another channel could promote."""
        return tip_version(self.released)


@dataclass(frozen=True)
class Known:
    """What the overview needs of an instruction the plan's index already knows."""

    version: str
    yanked: bool
    reason: str | None
    shown: str


def known_from_index(root: ReleaseRoot, releases: Iterable[tuple[str, bool, str | None]]) -> dict[str, Known]:
    """The index's releases (name, yanked, reason), by instruction path, as `survey` takes them."""
    channels = str(root.channels)
    return {
        f"{channels}/{name}{INSTRUCTION_SUFFIX}": Known(name.rpartition("/")[2], yanked, reason, f"channels/{name}{INSTRUCTION_SUFFIX}")
        for name, yanked, reason in releases
    }


def survey(root: ReleaseRoot, load: Callable[[InstructionPath], Instruction] | None = None,
           scan: ChannelScan | None = None, known: dict[str, Known] | None = None,
           elsewhere: Callable[[str, Label], set[str]] | None = None) -> list[PodStatus]:
    """Every pod of every channel, in path order; raises UserErrors for instructions that do not load.

    `scan` is channels/ if the caller has just read it; `known` the
    instructions it has already read and validated, by path: those are
    neither read nor checked again. `elsewhere(channel, pod)`: the versions
    the root's registry holds, which count as released; tip is about this
    disk, so where it should point comes from the pod directories alone.
    """
    load = load or instructions.load_instruction
    scan = scan or scan_channels(root)
    known = known or {}
    errors: list[UserError] = list(scan.bad_channels)
    pods: list[PodStatus] = []
    for home in scan.homes:
        label = home.label
        if label is None:
            errors.extend(_misplaced(root, home.channel, home.instructions, home.parts))
            continue
        loaded: dict[str, Instruction | Known] = {}
        for path, regular in home.instructions:
            seen = known.get(str(path))
            if seen is not None:
                loaded[seen.version] = seen
                continue
            try:
                instruction = load(root.instruction_path(home.channel, path, home.parts, regular))
            except UserError as err:
                errors.extend(err.each)
                continue
            loaded[instruction.version] = instruction
        released = {name for name, path in home.pod_dirs.items() if os.path.isfile(f"{path}/{POD_JSON}")}
        remote = elsewhere(home.channel, label) & set(loaded) if elsewhere is not None else set()
        pods.append(_pod_status(home.channel, label, _link(home.tip), loaded, released, remote))
    if errors:
        raise UserErrors(errors)
    return pods


def _misplaced(root: ReleaseRoot, channel: str, files: Iterable, parts: tuple[str, ...]) -> list[UserError]:
    """The mistakes of instruction files in a folder that is no pod's home."""
    found = []
    for path, regular in files:
        try:
            root.instruction_path(channel, path, parts, regular)
        except UserError as err:
            found.append(err)
    return found


def _link(path) -> str | None:
    if path is None:
        return None
    try:
        return os.readlink(path)
    except OSError:
        return None


def _pod_status(channel: str, pod: Label, tip: str | None, loaded: dict[str, Instruction | Known], released: set[str],
                remote: set[str]) -> PodStatus:
    versions = []
    for version in sorted(set(loaded) | released, key=version_key):
        instruction = loaded.get(version)
        versions.append(VersionStatus(
            version=version,
            released=version in released or version in remote,
            yanked=bool(instruction and instruction.yanked),
            reason=instruction.reason if instruction else None,
            instruction=instruction.shown if instruction else None,
        ))
    yanked = [i.version for i in loaded.values() if i.yanked]
    return PodStatus(channel, pod, tip, tip_version(released, yanked), tuple(versions))


def by_pod(pods: Iterable[PodStatus]) -> dict[Label, list[PodStatus]]:
    """The same pod in each channel."""
    found: dict[Label, list[PodStatus]] = {}
    for pod in pods:
        found.setdefault(pod.pod, []).append(pod)
    return found


def matches(pod: PodStatus, selector: str) -> bool:
    """Whether a `doit status` / `doit list` filter selects this pod.

    A filter is a channel (`prod`), a path prefix of `<channel>/<label_path>/<pod>`
    at a folder boundary (`prod/web`, `prod/web/frontend`) or a pod label
    (`//web:frontend`, in every channel).
    """
    if selector.startswith("//"):
        return str(pod.pod) == selector
    selector = selector.strip("/")
    return pod.name == selector or pod.name.startswith(selector + "/")


def candidates(pods: Iterable[PodStatus]) -> list[str]:
    """Every filter that selects something: for "did you mean"."""
    names: set[str] = set()
    for pod in pods:
        names.add(str(pod.pod))
        parts = pod.name.split("/")
        for end in range(1, len(parts) + 1):
            names.add("/".join(parts[:end]))
    return sorted(names)


def select(pods: list[PodStatus], filters: list[str], command: str) -> list[PodStatus]:
    """The pods (and versions) the filters name, in path order; an unknown filter is a LookupError."""
    if not filters:
        return pods
    wanted: dict[str, set[str] | None] = {}  # pod name -> its selected versions (None: all)
    for text in filters:
        selector = text.removeprefix(TASK_PREFIX)
        picked = [p for p in pods if matches(p, selector)]
        for pod in picked:
            wanted[pod.name] = None
        if not picked and "/" in selector:  # release:<channel>/<label_path>/<pod>/<version>
            head, _, version = selector.rpartition("/")
            picked = [p for p in pods if p.name == head and any(v.version == version for v in p.versions)]
            for pod in picked:
                versions = wanted.setdefault(pod.name, set())
                if versions is not None:
                    versions.add(version)
        if not picked:
            raise LookupError(unknown(text, candidates(pods), command))
    return [
        pod if wanted[pod.name] is None else replace(pod, versions=tuple(v for v in pod.versions if v.version in (wanted[pod.name] or ())))
        for pod in pods if pod.name in wanted
    ]


def unknown(text: str, known: list[str], command: str) -> str:
    """What a filter that selects nothing prints: the closest filters that select something."""
    return f"nothing matches {quoted(text)}{did_you_mean(text, known) or f' (see `{command}` without arguments)'}"
