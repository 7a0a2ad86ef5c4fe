"""Where `ops-onboard deploy` reads a pod from: a directory, a tarball, a URL.

Every source offers the same three operations, all by path relative to the
pod's `pod.json` (the paths `pod.json` itself lists):

- `read_pod_json(limit)` and `read_small(rel, limit)`: small files, whole;
- `fetch(rel, dest, make_check)`: put the file at the new path `dest`,
  streaming it through a check; `dest` does not exist if that fails.

A directory may be a bundle or a pod directory of a release root (its
symlinks are followed: every byte is checked anyway). A tarball is extracted
into the deploy's staging directory first (regular files only) and then read
like a directory, moving files instead of copying them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..core.errors import ContractError, FetchError
from ..core.hashing import Check, copy_file_verified, verify_file
from ..core.safetar import extract

if TYPE_CHECKING:
    from .fetching import HttpOptions, HttpSource

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")


class Source(Protocol):
    def describe(self, rel: str) -> str: ...
    def read_pod_json(self, limit: int) -> bytes: ...
    def read_small(self, rel: str, limit: int) -> bytes: ...
    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check]) -> None: ...


def _os_error(what: str, e: OSError) -> FetchError:
    return FetchError(f"{what}: {e.strerror.lower() if e.strerror else e}")


class DirSource:
    """A bundle directory, or a pod directory whose symlinks lead into a release root."""

    def __init__(self, root: Path, shown: str | None = None, move: bool = False):
        self.root = root
        self.shown = shown or str(root)
        self.move = move  # files may be renamed out (a private extracted copy)

    def describe(self, rel: str) -> str:
        if self.move:  # extracted from the tarball `shown`
            return f"{self.shown}:{rel}"
        return f"{self.shown.rstrip('/')}/{rel}"

    def _regular(self, rel: str) -> Path:
        path = self.root / rel
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FetchError(f"{self.describe(rel)}: missing") from None
        except OSError as e:
            raise _os_error(self.describe(rel), e) from None
        if not stat.S_ISREG(st.st_mode):
            raise FetchError(f"{self.describe(rel)}: not a regular file")
        return path

    def read_pod_json(self, limit: int) -> bytes:
        return self.read_small("pod.json", limit)

    def read_small(self, rel: str, limit: int) -> bytes:
        path = self._regular(rel)
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise _os_error(self.describe(rel), e) from None
        if len(data) > limit:
            raise FetchError(f"{self.describe(rel)}: larger than {limit} bytes")
        return data

    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check]) -> None:
        path = self._regular(rel)
        if not self.move:
            # Everything is installed readable by everyone, often by root, and a directory's
            # symlinks are followed: a link to a file its owner kept private (/etc/shadow)
            # would publish it. A release root's artifacts are readable by everyone anyway.
            mode = os.stat(path).st_mode
            if not mode & stat.S_IROTH:
                raise FetchError(f"{self.describe(rel)}: not readable by everyone (mode "
                                 f"{stat.S_IMODE(mode):04o}); ops-onboard installs files readable by "
                                 "everyone, so it copies none its owner kept private")
        try:
            if self.move and not os.path.islink(path):
                os.rename(path, dest)
                try:
                    os.chmod(dest, 0o644)
                    verify_file(dest, make_check())
                except BaseException:
                    dest.unlink(missing_ok=True)
                    raise
            else:
                copy_file_verified(path, dest, make_check())
        except OSError as e:
            raise _os_error(self.describe(rel), e) from None


def _bundle_root(extracted: Path, shown: str) -> Path:
    """`pod.json` at the top of the tar, or inside its single top-level directory."""
    if (extracted / "pod.json").is_file():
        return extracted
    entries = [e for e in extracted.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "pod.json").is_file():
        return entries[0]
    raise FetchError(f"{shown}: no pod.json at its top or in its single top-level directory")


def open_source(spec: str, staging: Path, http: HttpOptions | None) -> DirSource | HttpSource:
    """The source `spec` names; a tarball is extracted below `staging` (a private directory)."""
    if spec.startswith(("http://", "https://")):
        # urllib and ssl load only for URLs
        from .fetching import HttpOptions, HttpSource

        return HttpSource(spec, http or HttpOptions())
    if "://" in spec:
        raise ContractError(f"{spec}: only http:// and https:// URLs are supported")
    path = Path(spec)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FetchError(f"{spec}: no such file or directory") from None
    except OSError as e:
        raise _os_error(spec, e) from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise FetchError(f"{spec}: permission denied")
        return DirSource(path, spec)
    if not stat.S_ISREG(st.st_mode):
        raise FetchError(f"{spec}: neither a bundle directory, a tarball nor a URL")
    if not os.access(path, os.R_OK):
        raise FetchError(f"{spec}: permission denied")
    extracted = staging / "bundle"
    extract(path, extracted, spec, allow_symlinks=False)
    return DirSource(_bundle_root(extracted, spec), spec, move=True)
