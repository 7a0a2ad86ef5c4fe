"""Where `ops-onboard deploy` reads a pod from: a directory, a tarball, a URL, a registry.

Every source offers the same three operations, all by path relative to the
pod's `pod.json` (the paths `pod.json` itself lists):

- `read_pod_json(limit)` and `read_small(rel, limit)`: small files, whole,
  refused beyond `limit` bytes (over HTTP, pod.json has a smaller cap of its
  own: `fetching.MAX_POD_JSON_FETCHED`);
- `fetch(rel, dest, make_check, size)`: put the file of `size` bytes (as
  pod.json declares it) at the new path `dest`, streaming it through a check;
  another size is refused, and `dest` does not exist if that fails;
- `cancel(why)`: downloads still running stop and fail (HTTP; a local copy
  is short anyway).

`Downloads` runs a few `fetch`es at once, while its caller goes on.

A directory may be a bundle or a pod directory of a release root (its
symlinks are followed: every byte is checked anyway). A tarball is read in
two streaming passes: the first finds its `pod.json` (at its top or in a
top-level directory), the second extracts into the deploy's staging
directory only the regular files that pod.json names, each within a size
limit (`bundle_limits`); the rest of the tarball is skipped, never written.
The extracted files are then read like a directory, moved instead of copied.
A pod in a registry (`oci://...`) is pulled into the staging directory as a
bundle first (`pulling.py`) and then read the same way.
"""

from __future__ import annotations

import os
import queue
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from ..core.errors import ContractError, FetchError
from ..core.hashing import Check, copy_file_verified, verify_file
from ..core.oci import LAYOUT_DIR
from ..core.podjson import MAX_POD_JSON, PodJson, parse_pod_json
from ..core.safeopen import open_published, read_whole
from ..core.safetar import extract_named, find_member
from ..core.signing import MAX_SIGNATURE, SIGNATURE_NAME
from .checks import MAX_SHA512_FILE

if TYPE_CHECKING:
    from .fetching import HttpOptions, HttpSource

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
MAX_BUNDLE_FILE = 16 << 30  # bytes of one file of a bundle tarball
OCI_OVERHEAD = 64 << 20  # bytes of a bundle beyond twice what pod.json pins
OCI_BLOB = re.compile(r"blobs/sha256/[0-9a-f]{64}\Z")
DOWNLOADS_AT_ONCE = 4  # files of one pod fetched at the same time


class Source(Protocol):
    def describe(self, rel: str) -> str: ...
    def read_pod_json(self, limit: int) -> bytes: ...
    def read_small(self, rel: str, limit: int) -> bytes: ...
    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check], size: int) -> None: ...
    def cancel(self, why: str) -> None: ...


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

    def _open(self, rel: str) -> int:
        """The file `rel`, opened for reading, if it may be published.

        Everything is installed readable by everyone, often by root, and a
        directory's symlinks are followed: a link to a file its owner kept
        private (/etc/shadow, or a file in a directory closed to others)
        would publish it. So the file and every directory on its real path
        below this one, or outside it, must be open to everyone, checked on
        descriptors opened without following links (see core.safeopen).
        """
        try:
            return open_published(self.root / rel, self.root, self.describe(rel))
        except ContractError as e:
            raise FetchError(str(e)) from None

    def read_pod_json(self, limit: int) -> bytes:
        return self.read_small("pod.json", limit)

    def read_small(self, rel: str, limit: int) -> bytes:
        if self.move:  # extracted by this deploy, in its own staging directory
            path = self._regular(rel)
            try:
                with open(path, "rb") as f:
                    data = f.read(limit + 1)
            except OSError as e:
                raise _os_error(self.describe(rel), e) from None
            if len(data) > limit:
                raise FetchError(f"{self.describe(rel)}: larger than {limit} bytes")
            return data
        try:
            return read_whole(self._open(rel), limit, self.describe(rel))
        except ContractError as e:
            raise FetchError(str(e)) from None
        except OSError as e:
            raise _os_error(self.describe(rel), e) from None

    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check], size: int) -> None:
        # `size` is held by the check (core.hashing.SizeBound): a longer file fails as it is read
        try:
            if self.move:
                path = self._regular(rel)
                os.rename(path, dest)
                try:
                    os.chmod(dest, 0o644)
                    verify_file(dest, make_check())
                except BaseException:
                    dest.unlink(missing_ok=True)
                    raise
            else:
                copy_file_verified(self._open(rel), dest, make_check())
        except OSError as e:
            raise _os_error(self.describe(rel), e) from None

    def cancel(self, why: str) -> None:
        pass  # a local copy ends soon on its own


class Downloads:
    """`Source.fetch`es run `DOWNLOADS_AT_ONCE` at a time, while the caller goes on.

    `fetch` queues one; `wait` returns once every queued one has ended, and
    raises the first failure, after the source's `cancel` has stopped the
    others (each removes its file; one not started yet is skipped). Leaving
    the `with` block waits too, so no download outlives it (on an error,
    cancelled first). Fetching several files at once keeps a fast link busy
    while one file waits for its check, and several slow ones overlap.
    Plain threads and a queue: `concurrent.futures` would cost every deploy
    ten milliseconds of imports (logging) for nothing it needs here.
    """

    def __init__(self, source: Source, at_once: int = DOWNLOADS_AT_ONCE):
        self.source = source
        self.at_once = at_once
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._pending = 0
        self._failure: BaseException | None = None

    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check], size: int) -> None:
        with self._lock:
            self._pending += 1
        self._jobs.put((rel, dest, make_check, size))
        if len(self._threads) < min(self.at_once, self._pending):
            thread = threading.Thread(target=self._work, name=f"download-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._failure is None:
                    self.source.fetch(*job)
            except BaseException as e:
                with self._lock:
                    first = self._failure is None
                    if first:
                        self._failure = e
                if first:
                    self.source.cancel("stopped because another download failed")
            finally:
                with self._lock:
                    self._pending -= 1
                    self._ended.notify_all()

    def wait(self) -> None:
        with self._lock:
            while self._pending:
                self._ended.wait()
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> Downloads:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if error is None:
                self.wait()
                return
            with self._lock:
                if self._failure is None:
                    self._failure = error
            self.source.cancel("stopped because the deploy failed")
            with self._lock:
                while self._pending:
                    self._ended.wait()
        finally:
            for _ in self._threads:
                self._jobs.put(None)
            for thread in self._threads:
                thread.join()


def _is_pod_json(name: str) -> bool:
    """`pod.json` at the top of a bundle tarball, or in one top-level directory."""
    return name == "pod.json" or (name.count("/") == 1 and name.endswith("/pod.json"))


def bundle_limits(pod: PodJson) -> Callable[[str], int | None]:
    """For a path of a bundle, the most bytes it may hold; None for a path pod.json does not name."""
    limits: dict[str, int] = {"pod.json": MAX_POD_JSON, SIGNATURE_NAME: MAX_SIGNATURE}
    layouts: set[str] = set()
    for image in pod.images:
        limits[image.sha512_path] = MAX_SHA512_FILE
        if image.oci is not None:
            layouts.add(str(PurePosixPath(image.path).with_name(LAYOUT_DIR)) + "/")
    for rel, pin in pod.pins().items():  # each image.aci, volume file and pod file: its pinned size
        limits[rel] = min(pin.size, MAX_BUNDLE_FILE)

    def limit_of(rel: str) -> int | None:
        if rel in limits:
            return limits[rel]
        layout, sep, blob = rel.rpartition(LAYOUT_DIR + "/")
        if sep and layout + sep in layouts and OCI_BLOB.match(blob):
            return MAX_BUNDLE_FILE
        return None
    return limit_of


def bundle_total(pod: PodJson) -> int:
    """The most bytes a bundle's files may hold in all: what pod.json pins, twice over (an
    image's OCI layers hold what its image.aci holds, and are pinned only by its manifest),
    and OCI_OVERHEAD more for manifests, configs and the small files."""
    return 2 * sum(pin.size for pin in pod.pins().values()) + OCI_OVERHEAD


def _open_tarball(path: Path, spec: str, staging: Path) -> DirSource:
    """Extract what the tarball's pod.json names below `staging`, and read it from there."""
    found = find_member(path, spec, _is_pod_json, MAX_POD_JSON)
    if found is None:
        raise FetchError(f"{spec}: no pod.json at its top or in a top-level directory")
    name, raw = found
    prefix = name[: -len("pod.json")]  # "" or "<top-level directory>/"
    pod = parse_pod_json(raw, f"{spec}:{name}")
    limit_of = bundle_limits(pod)

    def limit(member: str) -> int | None:
        return limit_of(member[len(prefix):]) if member.startswith(prefix) else None

    extracted = staging / "bundle"
    extract_named(path, extracted, spec, limit, total=bundle_total(pod))
    return DirSource(extracted / prefix, spec, move=True)


def open_source(spec: str, staging: Path, http: HttpOptions | None) -> DirSource | HttpSource:
    """The source `spec` names; a tarball is extracted below `staging` (a private directory)."""
    if spec.startswith(("http://", "https://")):
        # urllib and ssl load only for URLs
        from .fetching import HttpOptions, HttpSource

        return HttpSource(spec, http or HttpOptions())
    if spec.startswith("oci://"):
        from .pulling import pull_bundle  # skopeo is needed only for registries

        return pull_bundle(spec, staging)
    if "://" in spec:
        raise ContractError(f"{spec}: only http://, https:// and oci:// sources are supported")
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
    return _open_tarball(path, spec, staging)
