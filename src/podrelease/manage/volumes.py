"""`doit volume-create`: pack a directory into a new volume version, on purpose.

Releases never create volumes; people do, with this command. The tarball
is deterministic, so packing the same directory twice (anywhere, any time,
under any umask) gives the same bytes and so the same sha512 in pod.json:

- entries sorted by name (`archive.write_tar`), named relative to the
  directory (no `./` prefix, the directory itself is not an entry);
- mtime 0, uid/gid 0, no user or group names (`archive`'s tar writer);
- modes normalised as git does: directories 0755, files 0755 if any execute
  bit is set, else 0644 (the umask of whoever made the files does not leak);
- symlinks kept as symlinks, but only relative ones that stay inside the
  directory (`ops-onboard` refuses any other when it extracts the volume);
- gzip with mtime 0 and no file name (`archive.ParallelGzipWriter`).

The volume is built in a `.tmp-` sibling and renamed into place, under the
volume's lock, and an existing version is never touched.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from ..build.archive import PORTABLE, Entry, ParallelGzipWriter, SourceChangedError, sort_key, write_tar
from ..core import fsops, locks
from ..core.hashing import sha512_file
from ..core.names import Label, check_version, quoted
from ..model.layout import ReleaseRoot
from .authoring import refuse

DIR_MODE = 0o755
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
TARBALL_SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class VolumeVersion:
    label: Label
    version: str

    def __str__(self) -> str:
        return f"{self.label}@{self.version}"

    @property
    def lock(self) -> str:
        """The lock name a release's volume task would use."""
        return f"volume:{self.label.join(self.version)}"


@dataclass(frozen=True)
class Created:
    tarball: Path
    sha512: str  # of the tarball as stored: what pod.json will record
    entries: int


def parse_volume_version(text: str) -> VolumeVersion:
    """`//<label_path>:<name>@<version>`."""
    label_text, sep, version = text.rpartition("@")
    if not sep:
        raise refuse(f"{quoted(text)} is not <label>@<version>, e.g. //web:static@1.1.0")
    try:
        return VolumeVersion(Label.parse(label_text), check_version(version))
    except ValueError as err:
        raise refuse(f"{quoted(text)}: {err}") from None


def tar_entries(source: Path) -> list[Entry]:
    """The directory's contents as sorted tar entries; refuse what a volume cannot hold."""
    entries = []
    real = os.path.realpath(source)  # files are read by real path, no link followed (core.safeopen)
    for dirpath, dirnames, filenames in os.walk(source, onerror=_raise):
        dirnames.sort()
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            inside = os.path.relpath(full, source).replace(os.sep, "/")
            entries.append(_entry(real, full, inside))
    entries.sort(key=lambda e: sort_key(e.name))
    return entries


def _raise(error: OSError) -> None:
    raise error


def _entry(real: str, full: str, inside: str) -> Entry:
    status = os.lstat(full)
    if stat.S_ISLNK(status.st_mode):
        target = os.readlink(full)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(inside), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise refuse(f"{full}: symlink -> {target} leaves the directory; a volume's links must stay inside it")
        return Entry(inside, "symlink", 0o777, linkname=target)
    if stat.S_ISDIR(status.st_mode):
        return Entry(inside, "dir", DIR_MODE)
    if stat.S_ISREG(status.st_mode):
        mode = EXECUTABLE_MODE if status.st_mode & 0o111 else FILE_MODE
        return Entry(inside, "file", mode, source=os.path.join(real, inside))
    raise refuse(f"{full}: not a regular file, directory or symlink; a volume holds only those")


def write_tarball(entries: list[Entry], path: Path) -> None:
    """The gzip-compressed tar of `entries`, created new (never over an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fsops.ARTIFACT_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        with ParallelGzipWriter(out, deflate=PORTABLE) as gz:  # its bytes are its identity
            write_tar(entries, gz)
    os.chmod(path, fsops.ARTIFACT_FILE_MODE)


def create_volume(root: ReleaseRoot, volume: VolumeVersion, source: Path) -> Created:
    """`volumes/<label_path>/<name>/<version>/<name>.tar.gz`, or a refusal with nothing written.

    Everything is checked before the lock is taken (a refusal leaves not
    even a lock file), and the version is checked again under it.
    """
    if not source.is_dir():
        raise refuse(f"{source} is not a directory")
    final = root.volume_dir(volume.label, volume.version)
    _refuse_existing(root, final)
    entries = tar_entries(source)
    name = volume.label.name + TARBALL_SUFFIX
    with locks.holding(root.path, volume.lock):
        _refuse_existing(root, final)
        try:
            with fsops.building_dir(final) as tmp:
                write_tarball(entries, tmp / name)
        except SourceChangedError as err:
            raise refuse(f"{err}; nothing was created") from None
    tarball = final / name
    return Created(tarball, sha512_file(tarball), len(entries))


def _refuse_existing(root: ReleaseRoot, final: Path) -> None:
    if os.path.lexists(final):
        raise refuse(f"{root.shown(final)}/ already exists; volumes are never overwritten (create a new version)")
