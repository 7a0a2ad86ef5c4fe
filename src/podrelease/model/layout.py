"""Where everything lives in a release root, and how sources are found.

Only this module joins names into paths. Names are validated before they
get here (see names.py), so a path built here never leaves the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UserError, UserErrors
from ..core.fsops import TMP_PREFIX
from ..core.names import Label, check_ac_name, check_label_path, check_segment, check_version

BUILD_FILE = "build.yaml"
MISNAMED_BUILD_FILE = "build.yml"
INSTRUCTION_SUFFIX = ".yaml"
CHANNEL_FILE = "channel.yaml"
POD_JSON = "pod.json"
IMAGE_SHA512 = "sha512"  # in an image version's directory; there once the image is built
TIP = "tip"


@dataclass(frozen=True)
class InstructionPath:
    """What an instruction's path says: channel, pod label and version."""

    path: Path
    shown: str
    channel: str
    pod: Label
    version: str


@dataclass(frozen=True)
class ReleaseRoot:
    path: Path

    @classmethod
    def from_environment(cls, default: Path) -> ReleaseRoot:
        """RELEASE_ROOT wins over the dodo file's folder."""
        return cls(Path(os.environ.get("RELEASE_ROOT") or default).resolve())

    def shown(self, path: Path) -> str:
        """A path as shown to users: relative to the release root."""
        try:
            return str(Path(path).relative_to(self.path))
        except ValueError:
            return str(path)

    # ---- sources
    @property
    def shipyard(self) -> Path:
        return self.path / "shipyard"

    @property
    def channels(self) -> Path:
        return self.path / "channels"

    def build_file(self, label_path: str) -> Path:
        return self.shipyard / label_path / BUILD_FILE if label_path else self.shipyard / BUILD_FILE

    def channel_file(self, channel: str) -> Path:
        return self.channels / channel / CHANNEL_FILE

    def instruction(self, channel: str, pod: Label, version: str) -> Path:
        return self.channels / channel / (pod.join(version) + INSTRUCTION_SUFFIX)

    # ---- artifacts
    def image_dir(self, label: Label, version: str) -> Path:
        return self.path / "images" / label.join(version)

    def volume_dir(self, label: Label, version: str) -> Path:
        return self.path / "volumes" / label.join(version)

    def pod_home(self, channel: str, pod: Label) -> Path:
        """The folder holding a pod's instructions, versions and tip in a channel."""
        return self.channels / channel / pod.join()

    def pod_dir(self, channel: str, pod: Label, version: str) -> Path:
        return self.channels / channel / pod.join(version)

    def tip(self, channel: str, pod: Label) -> Path:
        return self.pod_home(channel, pod) / TIP

    def bundle_dir(self, channel: str, pod: Label, version: str) -> Path:
        return self.path / "bundles" / channel / pod.join(version)

    # ---- discovery
    def build_files(self) -> list[tuple[Path, str]]:
        """Every `shipyard/**/build.yaml`, with its label path.

        A misnamed `build.yml` is listed too, so loading can refuse it by name
        instead of its rules silently not existing.
        """
        found = []
        top = str(self.shipyard)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            label_path = dirpath[len(top) + 1:]  # os.walk's paths all start with `top/`
            for name in (BUILD_FILE, MISNAMED_BUILD_FILE):
                if name in filenames:
                    found.append((Path(dirpath) / name, label_path))
        return found

    def instruction_paths(self, scan: ChannelScan | None = None) -> list[InstructionPath]:
        """Every `channels/<channel>/<label_path>/<pod>/<version>.yaml`, sorted (from `scan`, if given).

        A badly placed or named instruction (or channel folder) is one error each.
        """
        scan = scan or scan_channels(self)
        found: list[InstructionPath] = []
        errors: list[UserError] = list(scan.bad_channels)
        for home in scan.homes:
            for path, regular in home.instructions:
                try:
                    found.append(self.instruction_path(home.channel, path, home.parts, regular))
                except UserError as err:
                    errors.append(err)
        if errors:
            raise UserErrors(errors)
        return sorted(found, key=lambda where: where.path.parts)

    def instruction_path(self, channel: str, path: Path, parts: tuple[str, ...], regular: bool) -> InstructionPath:
        """What an instruction's path says, or why it is no instruction path.

        `parts` are the folders between the channel and the file; `regular`
        says the file is a regular file, not a symlink or special file.
        """
        shown = self.shown(path)
        if not regular:
            # a symlink could pull in any file on the machine; a fifo would hang the read
            raise UserError(shown, None, "a release instruction must be a regular file (not a symlink or special file)")
        if path.suffix != INSTRUCTION_SUFFIX:
            raise UserError(shown, None, "release instructions are named <version>.yaml, not .yml")
        if not parts:
            raise UserError(shown, None, "a release instruction lives at channels/<channel>/<label_path>/<pod>/<version>.yaml")
        try:
            version = check_version(path.name[: -len(INSTRUCTION_SUFFIX)])
            pod = check_ac_name(parts[-1], "pod name")
            label_path = check_label_path("/".join(parts[:-1]))
        except ValueError as err:
            raise UserError(shown, None, f"bad instruction path: {err}") from None
        return InstructionPath(path, shown, channel, Label(label_path, pod), version)


# ---------------------------------------------------------------- the one scanner of channels/


@dataclass
class PodHome:
    """One folder under `channels/<channel>/`: what discovery, verify and cleanup look at.

    A pod's home (`<label_path>/<pod>/`) holds its instructions, its pod
    directories and its tip; a label-path folder holds only deeper folders.
    """

    channel: str
    folder: Path
    parts: tuple[str, ...]  # the folders between the channel and this one
    instructions: list[tuple[Path, bool]] = field(default_factory=list)  # (path, is a regular file)
    pod_dirs: dict[str, Path] = field(default_factory=dict)  # version folder name -> path
    tip: Path | None = None
    symlinked_pod_dirs: list[Path] = field(default_factory=list)  # a link where a pod directory belongs
    temporaries: list[Path] = field(default_factory=list)  # `.tmp-*` of a running or dead release

    @property
    def label(self) -> Label | None:
        """The pod this folder is the home of, if its path names one."""
        if not self.parts:
            return None
        try:
            return Label(check_label_path("/".join(self.parts[:-1])), check_ac_name(self.parts[-1], "pod name"))
        except ValueError:
            return None


@dataclass
class ChannelScan:
    homes: list[PodHome]  # in path order; only folders holding something
    bad_channels: list[UserError]  # channel folders whose name is not a channel
    unreadable: list[tuple[Path, OSError]]  # folders that could not be listed


def scan_channels(root: ReleaseRoot) -> ChannelScan:
    """Walk `channels/` once, sorting what is there into pod homes.

    A folder is a pod directory (never descended into) when an instruction
    of its name sits beside it or it holds a pod.json. Dot-names are left
    alone, but `.tmp-*` directories are noted: cleanup must see what a
    running release is assembling.
    """
    scan = ChannelScan([], [], [])
    if not root.channels.is_dir():
        return scan
    for channel in sorted(os.listdir(root.channels)):
        top = root.channels / channel
        if channel.startswith(".") or not top.is_dir():
            continue
        try:
            check_segment(channel, "channel")
        except ValueError as err:
            scan.bad_channels.append(UserError(root.shown(top), None, str(err)))
            continue
        _scan_folder(channel, top, (), scan)
    return scan


def _scan_folder(channel: str, folder: Path, parts: tuple[str, ...], scan: ChannelScan) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:
        scan.unreadable.append((folder, err))
        return
    names = {e.name for e in entries}
    home = PodHome(channel, folder, parts)
    deeper = []
    for entry in entries:
        name, path = entry.name, Path(entry.path)
        if name.startswith("."):
            if name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                home.temporaries.append(path)
            continue
        if parts and name == TIP:
            home.tip = path
        elif entry.is_dir(follow_symlinks=False):
            if parts and (name + INSTRUCTION_SUFFIX in names or os.path.lexists(path / POD_JSON)):
                home.pod_dirs[name] = path
            else:
                deeper.append(path)
        elif name.endswith((".yaml", ".yml")):
            if not parts and name == CHANNEL_FILE:
                continue
            home.instructions.append((path, entry.is_file(follow_symlinks=False)))
        elif parts and entry.is_symlink() and name + INSTRUCTION_SUFFIX in names:
            home.symlinked_pod_dirs.append(path)
    if home.instructions or home.pod_dirs or home.tip or home.symlinked_pod_dirs or home.temporaries:
        scan.homes.append(home)
    for path in deeper:
        _scan_folder(channel, path, parts + (path.name,), scan)
