"""Where everything lives in a release root, and how sources are found.

Only this module joins names into paths. Names are validated before they
get here (see names.py), so a path built here never leaves the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError, UserErrors
from ..core.names import Label, check_ac_name, check_label_path, check_segment, check_version

BUILD_FILE = "build.yaml"
MISNAMED_BUILD_FILE = "build.yml"
INSTRUCTION_SUFFIX = ".yaml"
CHANNEL_FILE = "channel.yaml"
POD_JSON = "pod.json"
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
    def from_environment(cls, default: Path) -> "ReleaseRoot":
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
        for dirpath, dirnames, filenames in os.walk(self.shipyard):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            label_path = os.path.relpath(dirpath, self.shipyard)
            for name in (BUILD_FILE, MISNAMED_BUILD_FILE):
                if name in filenames:
                    found.append((Path(dirpath) / name, "" if label_path == "." else label_path))
        return found

    def instruction_paths(self) -> list[InstructionPath]:
        """Every `channels/<channel>/<label_path>/<pod>/<version>.yaml`, sorted.

        Pod directories (a folder next to its instruction, or holding a
        pod.json) and dot-folders (temporaries) are not descended into.
        """
        found: list[InstructionPath] = []
        errors: list[UserError] = []
        if not self.channels.is_dir():
            return found
        for channel in sorted(os.listdir(self.channels)):
            top = self.channels / channel
            if channel.startswith(".") or not top.is_dir():
                continue
            try:
                check_segment(channel, "channel")
            except ValueError as err:
                errors.append(UserError(self.shown(top), None, str(err)))
                continue
            self._walk_channel(channel, top, (), found, errors)
        if errors:
            raise UserErrors(errors)
        return found

    def _walk_channel(self, channel: str, folder: Path, parts: tuple[str, ...], found: list, errors: list) -> None:
        """Collect instructions below `folder`; a badly placed or named one is an error each."""
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        names = {e.name for e in entries}
        if parts and POD_JSON in names:
            return  # a pod directory whose instruction is gone
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if name + INSTRUCTION_SUFFIX in names:
                    continue  # the pod directory of that instruction
                self._walk_channel(channel, Path(entry.path), parts + (name,), found, errors)
            elif name.endswith((".yaml", ".yml")):
                if not parts and name == CHANNEL_FILE:
                    continue
                try:
                    found.append(self.instruction_path(channel, Path(entry.path), parts, entry.is_file(follow_symlinks=False)))
                except UserError as err:
                    errors.append(err)

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
