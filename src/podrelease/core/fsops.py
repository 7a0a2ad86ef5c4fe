"""Build aside, rename into place: how every artifact appears.

A temporary sibling is named `.tmp-<name>-<pid>-<random>`; readers ignore
dot names, and `sweep` removes what a dead process left behind (the pid says
whether its builder is still alive, so a concurrent run is never disturbed).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ContractError

TMP_PREFIX = ".tmp-"
ARTIFACT_DIR_MODE = 0o755
ARTIFACT_FILE_MODE = 0o644
TMP_NAME_PART = 64  # characters of an artifact's name kept in its temporary's name


@contextmanager
def building_dir(final: Path) -> Iterator[Path]:
    """Yield an empty sibling directory of `final`; rename it to `final` on success.

    If `final` appeared meanwhile (another process won), the work is dropped:
    artifacts are immutable, the first one stays.
    """
    make_dirs(final.parent)
    sweep(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final.name), dir=final.parent))
    try:
        os.chmod(tmp, ARTIFACT_DIR_MODE)
        yield tmp
        fsync_tree(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    """A temporary directory in `parent` (so hard links into it work), removed afterwards.

    Named like every temporary here, so `sweep` removes it if this process dies.
    """
    make_dirs(parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(name), dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def in_the_way(final: Path) -> bool:
    """Whether something other than nothing or an empty directory sits at `final`.

    Callers first check that their artifact is whole (its pod.json, its
    sha512), then ask this. The rename in `building_dir` replaces an empty
    directory (a stray `mkdir`) atomically, but anything else there would
    be taken for a concurrent builder's finished work and the new artifact
    silently dropped: a release that "succeeds" forever without its pod.json.
    """
    if os.path.islink(final):
        return True
    try:
        with os.scandir(final) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def make_dirs(path: Path, below: Path | None = None) -> list[Path]:
    """mkdir -p with mode 0755 whatever the umask (a web server may serve what we make).

    Returns the directories it created, outermost first, so a transaction can
    undo them. With `below`, every component under `below` must be a real
    directory or missing: never a symlink, which an extracted tarball may
    have put where a later file's directory goes (following it would place
    that file wherever the link points).
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    if below is not None:
        walked = below
        for part in path.relative_to(below).parts:
            walked = walked / part
            try:
                status = os.lstat(walked)
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(status.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(status.st_mode) else "not a directory"
                raise ContractError(f"{walked}: {what}, where a directory is needed")
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        os.chmod(folder, ARTIFACT_DIR_MODE)
        created.append(folder)
    return created


_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap what the names `a` and `b` hold, atomically (Linux `renameat2` RENAME_EXCHANGE).

    At every instant, and so after a crash at any moment, each name holds
    one of the two: replacing a directory by exchanging it with its new
    version never leaves its name empty, as renaming the old one aside and
    the new one in does between the two renames. OSError (ENOSYS, EINVAL)
    where the kernel or file system cannot exchange.
    """
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(a), None, str(b))
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_symlink(link: Path, target: str) -> None:
    """Point `link` at `target` atomically: a new link renamed over the old."""
    sweep(link.parent)
    tmp = link.parent / temporary_name(link.name)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(link.parent)


def replace_file(path: Path, data: bytes, mode: int = ARTIFACT_FILE_MODE) -> None:
    """Replace a small file atomically (state, not an artifact: it may change)."""
    make_dirs(path.parent)
    sweep(path.parent)
    tmp = path.parent / temporary_name(path.name)
    try:
        write_file(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def add_file(path: Path, data: bytes, mode: int = ARTIFACT_FILE_MODE) -> bool:
    """Make `path` appear whole holding `data`, unless it exists (then leave it: False).

    Written aside and hard-linked into place, which never replaces: a reader
    sees no file or the whole file, and of two writers the first one stays.
    """
    sweep(path.parent)
    tmp = path.parent / f"{_tmp_prefix(path.name)}{os.urandom(4).hex()}"
    try:
        write_file(tmp, data, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def write_file(path: Path, data: bytes, mode: int = ARTIFACT_FILE_MODE) -> None:
    """Create `path` (it must not exist) holding `data`, with exactly `mode` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        os.fchmod(out.fileno(), mode)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a freshly built artifact so a rename never publishes empty files."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            fd = os.open(full, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _tmp_prefix(name: str) -> str:
    # The name is cut short: a name of 255 bytes (a long version) is allowed, and with
    # the prefix, pid and random part its temporary would be too long a file name.
    return f"{TMP_PREFIX}{name[:TMP_NAME_PART]}-{os.getpid()}-"


def temporary_name(name: str) -> str:
    """A new temporary sibling name for `name`: `.tmp-<name, cut short>-<pid>-<random>`."""
    return f"{_tmp_prefix(name)}{os.urandom(4).hex()}"


def _owner_alive(tmp_name: str) -> bool:
    """Whether the process that named this temporary still runs."""
    try:
        pid = int(tmp_name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(parent: Path) -> None:
    """Remove temporaries that dead processes left in `parent`."""
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX) and not _owner_alive(name):
            full = parent / name
            if full.is_symlink() or not full.is_dir():
                full.unlink(missing_ok=True)
            else:
                shutil.rmtree(full, ignore_errors=True)
