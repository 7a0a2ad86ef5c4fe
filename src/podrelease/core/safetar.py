"""Extracting tarballs nobody vouched for: volumes and bundle tars.

`tarfile`'s `data` filter already strips what is dangerous; here we *refuse*
instead, naming the member, so a hostile or broken tarball fails the deploy
rather than silently installing something else than its author meant:

- absolute names and names with `..` components;
- setuid, setgid (and sticky) bits;
- devices and FIFOs;
- sparse files (they declare a size the archive does not hold: a few bytes
  of tar can make a file of exabytes that hashing would never finish);
- symbolic links with an absolute target or whose target leaves the
  directory; hard links to anything outside it;
- (bundles only) any symbolic link: a bundle holds regular files.

Then the `data` filter runs as well (it also resolves existing links on disk
for every member), and after extraction every symbolic link is resolved once
more against the final tree, so a link made to escape by a later member is
caught too. Extraction goes to a staging directory nobody uses yet.

Every extraction is bounded: at most MAX_MEMBERS members, and at most
`max_expanded(archive)` bytes of file data in all (MAX_EXPANSION times the
archive's size, at least MIN_EXPANDED): a few KiB of bzip2 or xz can
declare terabytes of zeros.

A bundle tarball is read differently (`find_member`, `extract_named`): its
`pod.json` is found first, in one streaming pass, and then only the
regular files whose paths the caller accepts (those pod.json names) are
written, each within its own size limit; every other member is skipped
unread, whatever it is. The stream itself is bounded too: its headers may
not place data beyond `max_expanded(archive)` bytes.

Several tarballs may be extracted into one tree (a volume's files): links
from one can combine with links from another (a link that only climbs out
once a later archive adds a `d/e -> .`), so the caller names the whole tree
as `audit_root` and every link in it is checked after each extraction.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UnsafeArchiveError
from .names import quoted

SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
MAX_MEMBERS = 100_000  # members of one tarball
MAX_EXPANSION = 200  # bytes of file data per byte of archive (gzip reaches ~1000 only on zeros)
MIN_EXPANDED = 256 << 20  # bytes of file data any tarball may hold, however small
COPY_CHUNK = 1 << 20


def max_expanded(archive: Path) -> int:
    """How many bytes of file data (and of tar stream) `archive` may expand to."""
    return max(MIN_EXPANDED, MAX_EXPANSION * os.stat(archive).st_size)


def _refuse(what: str, member: tarfile.TarInfo, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{what}: member {quoted(member.name)} {why}; refusing the archive")


def _inside(path: str) -> bool:
    """Whether a normalized relative path stays inside its root."""
    return path != ".." and not path.startswith("../")


def _check_member(member: tarfile.TarInfo, what: str, allow_symlinks: bool) -> None:
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _refuse(what, member, "has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise _refuse(what, member, "has a '..' component")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise _refuse(what, member, "is setuid or setgid")
    if member.issparse():
        raise _refuse(what, member, "is a sparse file (it declares more data than the archive holds)")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise _refuse(what, member, "is a device or FIFO")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise _refuse(what, member, "is not a file, directory or link")
    if member.issym():
        if not allow_symlinks:
            raise _refuse(what, member, "is a symbolic link (a bundle holds regular files only)")
        target = member.linkname
        if target.startswith("/"):
            raise _refuse(what, member, f"is a symbolic link to the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if not _inside(resolved):
            raise _refuse(what, member, f"is a symbolic link to {target!r}, outside its directory")
    if member.islnk():
        target = member.linkname
        if target.startswith("/") or not _inside(posixpath.normpath(target)):
            raise _refuse(what, member, f"is a hard link to {target!r}, outside its directory")


def _filter(what: str, allow_symlinks: bool, budget: int):
    counted = {"members": 0, "bytes": 0}

    def member_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo | None:
        counted["members"] += 1
        counted["bytes"] += member.size if member.isfile() else 0
        if counted["members"] > MAX_MEMBERS:
            raise UnsafeArchiveError(f"{what}: more than {MAX_MEMBERS} members; refusing the archive")
        if counted["bytes"] > budget:
            raise UnsafeArchiveError(f"{what}: its files expand to more than {budget} bytes "
                                     f"({MAX_EXPANSION} times its size); refusing the archive")
        _check_member(member, what, allow_symlinks)
        try:
            return tarfile.data_filter(member, dest_path)
        except tarfile.FilterError as e:
            raise _refuse(what, member, f"is unsafe ({e})") from None
    return member_filter


def _audit(root: Path, what: str) -> None:
    """Every link in the extracted tree resolves inside it; no special bits survived.

    Directories get mode 0755 (the `data` filter leaves them to the umask).
    """
    real_root = os.path.realpath(root)
    os.chmod(root, 0o755)
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(full)
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise UnsafeArchiveError(
                        f"{what}: member {rel!r} is a symbolic link resolving outside its directory; refusing the archive"
                    )
            elif stat.S_ISDIR(st.st_mode):
                os.chmod(full, 0o755)
            elif st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                raise UnsafeArchiveError(f"{what}: member {rel!r} is setuid or setgid; refusing the archive")
            elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise UnsafeArchiveError(f"{what}: member {rel!r} is not a file, directory or link; refusing the archive")


def extract(archive: Path, dest: Path, what: str, allow_symlinks: bool = True,
            audit_root: Path | None = None) -> None:
    """Extract the tarball `archive` (any compression tarfile reads) into the directory `dest`.

    Afterwards every link below `audit_root` (default `dest`; a directory
    holding `dest`) must resolve inside `audit_root`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            # errorlevel=2: an OSError or a tar error while extracting is fatal, never a warning.
            tar.errorlevel = 2
            tar.extractall(dest, filter=_filter(what, allow_symlinks, max_expanded(archive)))
        _audit(audit_root or dest, what)
    except UnsafeArchiveError:
        raise
    except RecursionError:
        # os.makedirs and os.walk recurse once per level: a hostile tar can nest deeper
        # than Python's stack. Refuse it like any other unsafe archive.
        raise UnsafeArchiveError(f"{what}: directories nested too deeply; refusing the archive") from None
    except tarfile.ReadError:
        raise UnsafeArchiveError(f"{what}: not a readable tar archive") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UnsafeArchiveError(f"{what}: cannot extract: {detail}") from None


# -- bundle tarballs: pod.json first, then only what it names -----------------------


def _normal(name: str) -> str:
    """A member name without its leading `./` (as `tar -C dir -cf x.tar .` writes them)."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _members(tar: tarfile.TarFile, archive: Path, what: str):
    """Each member of a streamed tar, checked against the member count and stream bounds."""
    budget = max_expanded(archive)
    for count, member in enumerate(tar, start=1):
        tar.members.clear()  # type: ignore[attr-defined]  # a stream keeps every header it read: keep none
        if count > MAX_MEMBERS:
            raise UnsafeArchiveError(f"{what}: more than {MAX_MEMBERS} members; refusing the archive")
        if member.offset_data + member.size > budget:
            raise UnsafeArchiveError(f"{what}: its data extends past {budget} bytes "
                                     f"({MAX_EXPANSION} times its size); refusing the archive")
        yield member


def _streamed(archive: Path, what: str, work: Callable[[tarfile.TarFile], Any]) -> Any:
    try:
        with tarfile.open(archive, "r|*") as tar:
            return work(tar)
    except UnsafeArchiveError:
        raise
    except tarfile.ReadError:
        raise UnsafeArchiveError(f"{what}: not a readable tar archive") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UnsafeArchiveError(f"{what}: cannot read: {detail}") from None


def find_member(archive: Path, what: str, accept: Callable[[str], bool], limit: int) -> tuple[str, bytes] | None:
    """The first member whose normalized name `accept`s, as (name, content); None if none.

    Reads headers only up to that member (skipping the data of the others).
    The member must be a regular file of at most `limit` bytes.
    """
    def work(tar: tarfile.TarFile) -> tuple[str, bytes] | None:
        for member in _members(tar, archive, what):
            name = _normal(member.name)
            if not accept(name):
                continue
            if not member.isfile() or member.issparse():
                raise _refuse(what, member, "is not a regular file")
            if member.size > limit:
                raise _refuse(what, member, f"is larger than {limit} bytes")
            data = tar.extractfile(member)
            assert data is not None
            return name, data.read(member.size)
        return None
    return _streamed(archive, what, work)


def extract_named(archive: Path, dest: Path, what: str, limit_of: Callable[[str], int | None],
                  total: int | None = None) -> None:
    """Write to `dest` the regular files whose normalized name `limit_of` gives a limit (bytes).

    `limit_of(name)` is None for a member to skip: it is never written nor
    looked at. A member to keep must be a regular file within its limit,
    and appear once; it is written with mode 0644 below `dest`, whose
    subdirectories are made as needed (the archive's own directory entries
    are not extracted; no link of any kind is). With `total`, the members
    kept may hold at most that many bytes in all.
    """
    seen: set[str] = set()
    written = [0]  # bytes of the members kept so far

    def work(tar: tarfile.TarFile) -> None:
        for member in _members(tar, archive, what):
            name = _normal(member.name)
            limit = limit_of(name)
            if limit is None:
                continue
            if not member.isfile() or member.issparse():
                raise _refuse(what, member, "is not a regular file")
            if member.size > limit:
                raise _refuse(what, member, f"is larger than {limit} bytes")
            written[0] += member.size
            if total is not None and written[0] > total:
                raise UnsafeArchiveError(f"{what}: the files pod.json names hold more than {total} bytes "
                                         "in all; refusing the archive")
            if name in seen:
                raise _refuse(what, member, "appears twice")
            seen.add(name)
            target = dest.joinpath(*name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member)
            assert data is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as out:
                left = member.size
                while left:
                    chunk = data.read(min(COPY_CHUNK, left))
                    if not chunk:
                        raise _refuse(what, member, "is truncated")
                    out.write(chunk)
                    left -= len(chunk)
    dest.mkdir(parents=True, exist_ok=True)
    _streamed(archive, what, work)
