"""What verify finds on disk, shared by every checker, and hashing it all once.

- images: each `images/<label_path>/<image>/<version>/` holding an image
  file (`ImageDir`); a folder that is none is reported, a stray file warned of.
- pod homes: `channels/` as the one scanner (`layout.scan_channels`) sorts
  it, with verify's messages for a bad channel name, a folder that cannot be
  listed, a pod folder whose path names no pod and a pod directory that is a
  symlink (`Home`, `PodDir`).
- paths resolved once: pods share most of their paths (`Scan.realpath`).

Images, volume files and pod files are hashed once each, in parallel threads (zlib and
hashlib release the GIL), streaming 1 MiB at a time: memory stays flat.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..build import imaging
from ..core.hashing import AciDigest, aci_digest, pin_file
from ..core.names import Label, check_ac_name, check_label_path, check_version
from ..core.podjson import PodJson
from ..model.layout import PodHome, ReleaseRoot, scan_channels
from .report import WARNING, Problems

MANIFEST_HEAD = 1 << 16  # the first bytes of a tar kept to read its manifest (its first member)
IMAGE_FILES = imaging.IMAGE_ENTRIES


@dataclass
class ImageDir:
    path: Path
    label: Label
    version: str
    aci: AciDigest | None = None
    recorded: str | None = None  # hex in the sha512 file, if well-formed
    record: dict | None = None  # build.json, if it parses
    broken: bool = False  # an error was reported for it
    unreadable: str | None = None  # why image.aci could not be read
    oci: str | None = None  # the digest of its OCI manifest, once checked whole

    @property
    def id(self) -> str | None:
        """The best-known id: of the content if it decompresses, else the sha512 file's."""
        if self.aci is not None and self.aci.tar_sha512:
            return f"sha512-{self.aci.tar_sha512}"
        return f"sha512-{self.recorded}" if self.recorded else None

    @property
    def ids(self) -> set[str]:
        """Ids a pod may name without a fault of its own.

        A sound image has one id. A broken one (already reported) may be
        named by its content's id or by its sha512 file's: the fault is the
        image's, and one fault is one line.
        """
        if not self.broken:
            return {self.id} if self.id else set()
        ids = {f"sha512-{self.recorded}"} if self.recorded else set()
        if self.aci is not None and self.aci.tar_sha512:
            ids.add(f"sha512-{self.aci.tar_sha512}")
        return ids


@dataclass
class PodDir:
    path: Path
    version: str
    doc: PodJson | None = None  # pod.json when it has the spec's shape


@dataclass
class Home:
    """A pod home as verify sees it: what the scanner found, and what checking learns."""

    scanned: PodHome
    label: Label | None = None
    pod_dirs: dict[str, PodDir] = field(default_factory=dict)
    yanked: set[str] = field(default_factory=set)  # versions whose instruction says `yanked: true`
    unreadable: bool = False  # an instruction did not load: which versions are yanked is unknown

    @property
    def channel(self) -> str:
        return self.scanned.channel

    @property
    def folder(self) -> Path:
        return self.scanned.folder

    @property
    def parts(self) -> tuple[str, ...]:
        return self.scanned.parts

    @property
    def tip(self) -> Path | None:
        return self.scanned.tip

    @property
    def instructions(self) -> list[tuple[Path, bool]]:
        """(path, is a regular file)"""
        return self.scanned.instructions


class Scan:
    """Everything found under the release root; checkers read it and mark images broken."""

    def __init__(self, root: ReleaseRoot):
        self.root = root
        self.real_root = os.path.realpath(root.path)
        self.checked = {"images": 0, "pods": 0, "tips": 0, "instructions": 0, "build_files": 0}
        self.images: dict[tuple[Label, str], ImageDir] = {}
        self.homes: list[Home] = []
        self.homes_by_folder: dict[Path, Home] = {}
        # real path of a volume file or pod file -> (sha512, size); None: not hashed yet
        self.file_pins: dict[str, tuple[str, int] | OSError | None] = {}
        self._reals: dict[str, str] = {}
        self._resolving: set[str] = set()

    def pods(self) -> Iterator[tuple[Home, PodDir]]:
        for home in self.homes:
            for pod in home.pod_dirs.values():
                yield home, pod

    def realpath(self, path: Path | str) -> str:
        """`os.path.realpath`, remembering every resolved prefix: pods share most of their paths."""
        path = os.fspath(path)
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)  # not abspath: `..` must follow symlinks, as realpath does
        return self._real(path)

    def _real(self, path: str) -> str:
        known = self._reals.get(path)
        if known is not None:
            return known
        parent, name = os.path.split(path.rstrip("/"))
        if not name:
            return "/"
        base = self._real(parent)
        if name == "..":
            result = os.path.dirname(base)
        elif name == ".":
            result = base
        else:
            full = os.path.join(base, name)
            try:
                target = os.readlink(full)
            except OSError:  # not a symlink, or not there: the path stands as it is
                result = full
            else:
                if full in self._resolving:  # a symlink loop: give up on it as realpath does
                    return full
                self._resolving.add(full)
                try:
                    result = self._real(os.path.join(base, target))
                finally:
                    self._resolving.discard(full)
        self._reals[path] = result
        return result

    def inside_root(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root + os.sep)


# ---------------------------------------------------------------- finding


def find_images(scan: Scan, problems: Problems) -> None:
    top = scan.root.path / "images"
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = [f for f in filenames if not f.startswith(".")]
        folder = Path(dirpath)
        if not any(f in IMAGE_FILES for f in files):
            if dirnames:  # a label-path or image folder: stray files are noted, the walk goes on
                for name in sorted(files):
                    problems.report("image", folder / name, "unexpected file among image folders", WARNING)
                continue
            if not files:
                continue
        scan.checked["images"] += 1
        for name in sorted(dirnames + files):
            if name not in IMAGE_FILES:
                problems.report("image", folder / name, "unexpected entry in an image directory", WARNING)
        dirnames[:] = []
        parts = folder.relative_to(top).parts
        try:
            if len(parts) < 2:
                raise ValueError("not images/<label_path>/<image>/<version>/")
            version = check_version(parts[-1])
            name = check_ac_name(parts[-2], "image name")
            label_path = check_label_path("/".join(parts[:-2]))
        except ValueError as err:
            problems.report("image", folder, f"not an image directory: {err}")
            continue
        label = Label(label_path, name)
        scan.images[(label, version)] = ImageDir(folder, label, version)


def find_pod_homes(scan: Scan, problems: Problems) -> None:
    """Pod homes holding instructions, pod directories or a tip.

    In the order verify has always met them, a folder's sub-folders before
    the folder itself: instructions are loaded, and planned, in that order.
    """
    channels = scan_channels(scan.root)
    for bad in channels.bad_channels:
        problems.report_error("instruction", bad)
    for folder, failure in channels.unreadable:
        problems.report("pod", folder, f"cannot list: {failure.strerror}")
    for scanned in sorted(channels.homes, key=_walk_order):
        for path in scanned.symlinked_pod_dirs:
            problems.report("pod", path, "a pod directory must be a directory, not a symlink")
        home = Home(scanned)
        if home.parts:  # a channel's own folder holds no pod directory (its instructions are misplaced: each says so)
            home.pod_dirs = {name: PodDir(path, name) for name, path in scanned.pod_dirs.items()}
        if not (home.pod_dirs or home.instructions or home.tip):
            continue
        scan.checked["instructions"] += len(home.instructions)
        scan.checked["pods"] += len(home.pod_dirs)
        if home.parts:
            try:
                home.label = Label(check_label_path("/".join(home.parts[:-1])), check_ac_name(home.parts[-1], "pod name"))
            except ValueError as err:
                if not home.instructions:  # an instruction reports its own bad path
                    problems.report("pod", home.folder, f"not a pod folder: {err}")
        scan.homes.append(home)
        scan.homes_by_folder[home.folder] = home


def _walk_order(home: PodHome) -> tuple:
    """Channels in name order; in each, a folder's sub-folders (in name order) before the folder."""
    return (home.channel, tuple((0, part) for part in home.parts) + ((1, ""),))


# ---------------------------------------------------------------- hashing


def hash_jobs(scan: Scan) -> list[Callable[[], None]]:
    """Hashing every image (the biggest first: threads finish together), every volume file and pod file."""
    sized = []
    for image in scan.images.values():
        try:
            status = os.lstat(image.path / imaging.IMAGE_FILE)
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode):
            sized.append((status.st_size, image))
    sized.sort(key=lambda item: -item[0])
    jobs: list[Callable[[], None]] = [partial(_hash_image, image) for _, image in sized]
    jobs += [partial(_pin_file, scan.file_pins, real) for real in scan.file_pins]
    return jobs


def run_in_parallel(jobs: list[Callable[[], None]], workers: int) -> None:
    """Each job once, on `workers` threads."""
    if not jobs:
        return
    with ThreadPoolExecutor(min(max(1, workers), len(jobs)), thread_name_prefix="verify") as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _hash_image(image: ImageDir) -> None:
    try:
        image.aci = aci_digest(image.path / imaging.IMAGE_FILE, MANIFEST_HEAD)
    except OSError as err:
        image.unreadable = f"cannot be read: {err.strerror}"


def _pin_file(pins: dict[str, tuple[str, int] | OSError | None], real: str) -> None:
    try:
        pins[real] = pin_file(real)
    except OSError as err:
        pins[real] = err
