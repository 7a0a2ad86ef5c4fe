"""Opening a file whose content will be published, without being led astray by symbolic links.

What podrelease reads from a release root or a bundle directory ends up in
images, bundles and installed pods, readable by everyone (ops-onboard often
runs as root). Two ways a private file could get there:

- a symbolic link (a volume file, a bundle entry) to a file its owner kept
  private, such as `/etc/shadow`, or to a readable file inside a directory
  only its owner may enter (`/root/notes`, mode 0644 under `/root` 0700);
- a check made on a path, then the file reopened by the same path after a
  directory on it was swapped for a symbolic link.

So `open_published(path, base)` (and `open_real(path)`, for a source
planned by its real path and read later) opens a file one component at a time from
`/`, each directory with `O_DIRECTORY | O_NOFOLLOW` relative to the one
before (`dir_fd`), the file with `O_NOFOLLOW`, and makes its checks on the
open descriptors (`fstat`); the caller reads the descriptor that was
checked. `base` is the directory the file was asked from (a bundle, a pod
directory, a volume): with `follow=True` every link is resolved once
beforehand (`realpath`), and a link swapped in afterwards fails the walk
(`ELOOP`) instead of being followed; with `follow=False` no component below
`base` may be a link at all.

Readable by everyone means: the file's mode lets others read it, and every
directory on its real path lets others through, except `base` and the
directories above it (where the person deploying or releasing chose to
keep their work, often a home directory closed to others). A link out of
`base` into a private place is therefore refused wherever it leads.

Failures are ContractError (PrivateFile for a private file), one line
naming the path as `shown`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import ContractError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PrivateFile(ContractError):
    """A file its owner kept private (or behind a directory only its owner may enter)."""


def _exempt(base: str) -> set[str]:
    """`base` and every directory above it."""
    exempt = {"/"}
    path = ""
    for part in base.split("/"):
        if part:
            path += "/" + part
            exempt.add(path)
    return exempt


def open_published(path: Path | str, base: Path | str, shown: str | None = None, follow: bool = True) -> int:
    """The regular file `path` (below or linked from the directory `base`) opened for reading,
    if everyone may read it; the caller owns the descriptor."""
    shown = shown or str(path)
    real_base = os.path.realpath(base)
    if follow:
        target = os.path.realpath(path)
    else:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
        if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
            raise ContractError(f"{shown}: not below {base}")
        target = os.path.join(real_base, rel)
    parts = [p for p in target.split("/") if p]
    if not parts:
        raise ContractError(f"{shown}: not a regular file")
    return _walk(parts, shown, public_except=_exempt(real_base))


def _walk(parts: list[str], shown: str, public_except: set[str] | None) -> int:
    """The regular file at `/<parts...>`, opened one component at a time from `/` following no link.

    With `public_except`, every directory on the way (but those named) and the
    file must be readable by everyone, checked on the descriptors opened.
    """
    try:
        fd = os.open("/", _DIR_FLAGS)
    except OSError as e:
        raise _failed(shown, e) from None
    try:
        walked = "/"
        for i, part in enumerate(parts):
            if public_except is not None and walked not in public_except:
                _check_public(fd, walked, shown, directory=True)
            last = i == len(parts) - 1
            try:
                child = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise _failed(shown, e, through=not last) from None
            os.close(fd)
            fd = child
            walked = os.path.join(walked, part)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ContractError(f"{shown}: not a regular file")
        if public_except is not None:
            _check_public(fd, walked, shown, directory=False)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_public(fd: int, walked: str, shown: str, directory: bool) -> None:
    mode = os.fstat(fd).st_mode
    if directory and not mode & stat.S_IXOTH:
        raise PrivateFile(f"{shown}: not readable by everyone: the directory {walked} (mode "
                          f"{stat.S_IMODE(mode):04o}) is closed to others; podrelease publishes "
                          "no file its owner kept private")
    if not directory and not mode & stat.S_IROTH:
        raise PrivateFile(f"{shown}: not readable by everyone (mode {stat.S_IMODE(mode):04o}); "
                          "podrelease publishes no file its owner kept private")


def _failed(shown: str, e: OSError, through: bool = False) -> ContractError:
    if e.errno == errno.ENOENT:
        return ContractError(f"{shown}: missing")
    if e.errno == errno.ELOOP or (through and e.errno == errno.ENOTDIR):
        return ContractError(f"{shown}: leads through a symbolic link or a file where a directory should be")
    if e.errno == errno.ENXIO:
        return ContractError(f"{shown}: not a regular file")
    return ContractError(f"{shown}: cannot read: {e.strerror or e}")


def open_real(path: Path | str, shown: str | None = None) -> int:
    """The regular file at the real path `path` (one with no link on it, as `realpath` gives),
    opened one component at a time from `/` without following a link on any of them.

    For a source checked when planned and read later: a directory on its path
    swapped for a link meanwhile fails the walk (`ELOOP`), it is not followed.
    """
    shown = shown or str(path)
    parts = [p for p in str(path).split("/") if p]
    if not str(path).startswith("/") or not parts:
        raise ContractError(f"{shown}: not an absolute path")
    return _walk(parts, shown, public_except=None)


def read_whole(fd: int, limit: int, shown: str) -> bytes:
    """At most `limit` bytes of the open file `fd` (closed after); ContractError if it holds more."""
    with open(fd, "rb", buffering=0) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ContractError(f"{shown}: larger than {limit} bytes")
    return data
