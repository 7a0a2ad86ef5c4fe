"""Hashing content as it streams: image ids and volume-file digests.

A check is fed the bytes of one file in order (`update`), then `finish`
raises `IntegrityError` unless they were what was expected. Checks never
hold more than a chunk: an image's id is the sha512 of its *uncompressed*
tar, so `AciIdCheck` inflates gzip on the fly with a bounded output size.

`copy_verified` moves bytes from a reader to a file through a check on other
threads, so reading and writing (syscalls) overlap inflating and hashing (C
code that releases the GIL; an image's inflated bytes are hashed on a third
thread), and the file is flushed to disk as it grows: the transfer runs at
the speed of its slowest stage rather than of their sum.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from isal import isal_zlib

from .errors import IntegrityError

CHUNK = 1 << 20  # bytes read, written and hashed at a time
MAX_INFLATE = 1 << 20  # bytes of inflated output per step: bounded memory on a gzip bomb
FLUSH_EVERY = 32 << 20  # bytes written between two background fdatasync calls
GZIP_MAGIC = b"\x1f\x8b"


def short(hexdigest: str) -> str:
    """Enough of a digest to tell two apart in a message."""
    return hexdigest[:16] + "…"


class Writable(Protocol):
    """Where written bytes go: a binary file, or a writer that passes them on."""

    def write(self, data: bytes | memoryview, /) -> int: ...


class Check(Protocol):
    def update(self, data: memoryview | bytes) -> None: ...
    def finish(self) -> None: ...


class SizeBound:
    """Counts bytes against a pinned size: more is refused as soon as it arrives
    (a download stops there), fewer when the stream ends."""

    def __init__(self, size: int | None, what: str):
        self.size = size
        self.what = what
        self.seen = 0

    def update(self, n: int) -> None:
        self.seen += n
        if self.size is not None and self.seen > self.size:
            raise IntegrityError(f"{self.what}: more than the {self.size} bytes pod.json pins")

    def finish(self) -> None:
        if self.size is not None and self.seen != self.size:
            raise IntegrityError(f"{self.what}: {self.seen} bytes, pod.json pins {self.size}")


class Sha512Check:
    """The sha512 of the bytes as they are (volume tarballs, pod files), and their
    count when `size` is given."""

    def __init__(self, expected_hex: str, what: str, size: int | None = None):
        self.expected = expected_hex
        self.what = what
        self._hash = hashlib.sha512()
        self._bound = SizeBound(size, what)

    def update(self, data) -> None:
        self._bound.update(len(data))
        self._hash.update(data)

    def finish(self) -> None:
        self._bound.finish()
        got = self._hash.hexdigest()
        if got != self.expected:
            raise IntegrityError(
                f"{self.what}: sha512 is {short(got)}, expected {short(self.expected)}"
            )


class Sha256Check:
    """The sha256 of the bytes as they are (OCI blobs, named by it: `sha256:<hex>`)."""

    def __init__(self, expected: str, what: str):
        self.expected = expected.removeprefix("sha256:")
        self.what = what
        self._hash = hashlib.sha256()

    def update(self, data) -> None:
        self._hash.update(data)

    def finish(self) -> None:
        got = self._hash.hexdigest()
        if got != self.expected:
            raise IntegrityError(f"{self.what}: sha256 is {short(got)}, expected {short(self.expected)}")


class RecordingCheck:
    """No expectation: remembers the sha512 (what a bundle copies beside pod.json's pins)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha512()
        self.hexdigest = ""

    def update(self, data) -> None:
        self._hash.update(data)

    def finish(self) -> None:
        self.hexdigest = self._hash.hexdigest()


class InflateError(ValueError):
    """A gzip stream that does not inflate; the message says why, in a few words."""


class GzipInflater:
    """Inflate a gzip stream as gzip(1) reads it, `MAX_INFLATE` bytes of output at a time.

    The one inflater of podrelease: verify and deploy both use it, so they
    cannot disagree about what an image holds. It is ISA-L's (python-isal,
    which also deflates image.aci): two to three times zlib's speed
    (measured here: 3.5-4.7 GB/s of output against zlib's 1.7), so an image
    inflates far faster than it downloads or is hashed; it checks each
    member's CRC-32 and length as zlib does.
    Concatenated members are one
    stream (gzip's rule), zero bytes after the last member are padding
    (gzip(1) accepts them too), anything else after it is refused, and so is
    a stream that ends early.
    """

    def __init__(self, sink: Callable[[bytes], None]):
        self._sink = sink
        self._d = isal_zlib.decompressobj(wbits=31)
        self._between = False  # after a member: zero padding or another member may follow
        self._pending = b""

    def feed(self, data) -> None:
        try:
            self._feed(data)
        except (zlib.error, isal_zlib.error) as e:  # type: ignore[misc]  # (isal ships no stub for it)
            raise InflateError(str(e)) from None

    def _feed(self, data) -> None:
        while data:
            if self._between:
                self._pending = (self._pending + bytes(data)).lstrip(b"\0")
                if len(self._pending) < 2:
                    return
                if self._pending[:2] != GZIP_MAGIC:
                    raise InflateError("garbage after the end of the gzip stream")
                data, self._pending = self._pending, b""
                self._d = isal_zlib.decompressobj(wbits=31)
                self._between = False
            out = self._d.decompress(data, MAX_INFLATE)
            if out:
                self._sink(out)
            if self._d.eof:
                self._between = True
                data = self._d.unused_data
            else:
                data = self._d.unconsumed_tail
                while not data and not self._d.eof:  # output held back by the MAX_INFLATE bound
                    out = self._d.decompress(b"", MAX_INFLATE)
                    if not out:
                        break
                    self._sink(out)
                if self._d.eof:
                    self._between = True
                    data = self._d.unused_data

    def close(self) -> None:
        if not self._between:
            raise InflateError("the gzip stream ends early (truncated)")
        if self._pending:
            raise InflateError("garbage after the end of the gzip stream")


class _BackgroundSha512:
    """sha512 on a thread of its own, fed immutable `bytes`: inflating and hashing overlap.

    At most `depth` pieces wait in line (each at most `MAX_INFLATE` bytes).
    The thread always ends: `hexdigest` joins it, and so does `close` on a
    path that gives up early.
    """

    def __init__(self, depth: int = 4):
        self._hash = hashlib.sha512()
        self._queue: queue.Queue = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="sha512", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            self._hash.update(piece)

    def update(self, piece: bytes) -> None:
        self._queue.put(piece)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@dataclass(frozen=True)
class AciDigest:
    """What one read of an `image.aci` found."""

    file_sha512: str  # of the file as stored
    size: int  # bytes as stored
    compressed: bool  # it starts like gzip
    tar_sha512: str | None  # of the tar inside (the image id's hex); None when it does not inflate
    head: bytes  # the first bytes of the tar, where its manifest is
    error: str | None  # why it does not inflate


class AciDigester:
    """Stored bytes in, in order; the file's sha512 and the id of the tar inside out.

    A gzip'd ACI is inflated on the caller's thread and its tar hashed on
    another (both release the GIL); an uncompressed one is hashed as it is.
    Keeps the first `keep_head` bytes of the tar (an ACI's manifest is its
    first member).
    """

    def __init__(self, keep_head: int = 0, background: bool = False):
        self._file = hashlib.sha512()
        self._size = 0
        self._keep_head = keep_head
        self._background = background
        self._head = bytearray()
        self._start: bytes | None = b""  # the first bytes until we know if it is gzip; then None
        self._tar: hashlib._Hash | _BackgroundSha512 = hashlib.sha512()
        self._inflater: GzipInflater | None = None
        self._error: str | None = None

    def _tar_bytes(self, data) -> None:
        self._tar.update(data)
        if len(self._head) < self._keep_head:
            self._head.extend(data[: self._keep_head - len(self._head)])

    def update(self, data) -> None:
        self._file.update(data)
        self._size += len(data)
        if self._start is not None:
            self._start += bytes(data)
            if len(self._start) < 2:
                return
            if self._start[:2] == GZIP_MAGIC:
                if self._background:
                    self._tar = _BackgroundSha512()
                self._inflater = GzipInflater(self._tar_bytes)
            data, self._start = self._start, None
        self._feed(data)

    def _feed(self, data) -> None:
        if self._error is not None:
            return  # keep hashing the stored bytes only
        if self._inflater is None:
            self._tar_bytes(data)
            return
        try:
            self._inflater.feed(data)
        except InflateError as e:
            self._error = str(e)

    def finish(self) -> AciDigest:
        if self._start:
            self._feed(self._start)  # a one-byte file: not gzip
        self._start = None
        if self._inflater is not None and self._error is None:
            try:
                self._inflater.close()
            except InflateError as e:
                self._error = str(e)
        tar = self._tar.hexdigest()
        return AciDigest(
            file_sha512=self._file.hexdigest(),
            size=self._size,
            compressed=self._inflater is not None,
            tar_sha512=None if self._error else tar,
            head=bytes(self._head),
            error=self._error,
        )


def aci_digest(path: Path | str, keep_head: int = 0) -> AciDigest:
    """Read an `image.aci` once (never through a symlink): see `AciDigester`."""
    digester = AciDigester(keep_head, background=True)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while count := f.readinto(buffer):
            digester.update(view[:count])
    return digester.finish()


class AciIdCheck:
    """The id of an ACI: sha512 of its uncompressed tar (gzip'd or not); with `stored`
    (sha512 hex, size) also the file as stored, byte for byte."""

    def __init__(self, expected_id: str, what: str, stored: tuple[str, int] | None = None):
        self.expected = expected_id
        self.what = what
        self.stored = stored
        self._digester = AciDigester(background=True)
        self._bound = SizeBound(stored[1] if stored else None, what)

    def update(self, data) -> None:
        try:
            self._bound.update(len(data))
        except IntegrityError:
            self._digester.finish()  # ends its hashing thread: nobody will finish this check
            raise
        self._digester.update(data)

    def finish(self) -> None:
        found = self._digester.finish()
        self._bound.finish()
        if found.error is not None:
            raise IntegrityError(f"{self.what}: not a valid gzip-compressed ACI: {found.error}")
        got = f"sha512-{found.tar_sha512}"
        if got != self.expected:
            raise IntegrityError(
                f"{self.what}: content is image {short(got)}, pod.json says {short(self.expected)}"
            )
        if self.stored is not None and found.file_sha512 != self.stored[0]:
            raise IntegrityError(
                f"{self.what}: sha512 as stored is {short(found.file_sha512)}, pod.json pins {short(self.stored[0])}"
            )


def check_sha512_file(data: bytes, image_id: str, what: str) -> None:
    """An image's `sha512` file holds its id's hex digest and a newline."""
    expected = image_id[len("sha512-"):]
    text = data.decode("ascii", errors="replace").strip()
    if text != expected:
        # Only a digest is ever repeated: the file may be a link to one that holds a secret.
        said = short(text) if text and all(c in "0123456789abcdef" for c in text) else None
        raise IntegrityError(
            f"{what}: says {said}, the image id is {short(image_id)}" if said else
            f"{what}: holds no sha512 digest (the image id is {short(image_id)})"
        )


class _Stop:
    pass


class _Flusher:
    """fdatasync(2)s a file being written, on a thread, every `FLUSH_EVERY` bytes.

    The fsync that must precede renaming the file into place then finds
    almost nothing left to write: the disk worked while the network did.
    """

    def __init__(self, out) -> None:
        self.fd = out.fileno()
        self.unflushed = 0
        self.wake = threading.Event()
        self.stopping = False
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            try:
                os.fdatasync(self.fd)
            except OSError:
                return  # the final fsync reports it

    def wrote(self, n: int) -> None:
        self.unflushed += n
        if self.unflushed >= FLUSH_EVERY:
            self.unflushed = 0
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="flush", daemon=True)
                self.thread.start()
            self.wake.set()

    def stop(self) -> None:
        if self.thread is not None:
            self.stopping = True
            self.wake.set()
            self.thread.join()


def _write_all(out, data: memoryview) -> None:
    """An unbuffered write may take fewer bytes than given: write until all are taken."""
    while data:
        written = out.write(data)
        if written is None:  # a non-blocking file would say so; ours never are
            raise OSError("write would block")
        data = data[written:]


def copy_verified(readinto: Callable[[memoryview], int], out, check: Check,
                  on_chunk: Callable[[int], None] | None = None, buffers: int = 4) -> int:
    """Copy everything `readinto` yields to the binary file `out`, feeding `check`.

    Returns the number of bytes copied. `readinto(buf)` returns 0 at the end.
    The caller calls `check.finish()` (it may resume after an error in
    `readinto`: the check has then seen exactly the bytes written to `out`).
    """
    free: queue.Queue = queue.Queue()
    for _ in range(buffers):
        free.put(bytearray(CHUNK))
    work: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def verifier() -> None:
        while True:
            item = work.get()
            if isinstance(item, _Stop):
                return
            buf, n = item
            try:
                if not failure:
                    check.update(memoryview(buf)[:n])
            except BaseException as e:  # reported by the copying thread
                failure.append(e)
            free.put(buf)

    thread = threading.Thread(target=verifier, name="verify", daemon=True)
    thread.start()
    flusher = _Flusher(out)
    total = 0
    try:
        while not failure:
            buf = free.get()
            n = readinto(memoryview(buf))
            if not n:
                free.put(buf)
                break
            work.put((buf, n))  # the verifier reads it while we write it: both only read it
            _write_all(out, memoryview(buf)[:n])
            flusher.wrote(n)
            total += n
            if on_chunk is not None:
                on_chunk(n)
    finally:
        work.put(_Stop())
        thread.join()
        flusher.stop()
    if failure:
        raise failure[0]
    return total


def verify_file(path: Path, check: Check) -> None:
    """Feed a file through `check` and finish it."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        while n := f.readinto(buf):
            check.update(mv[:n])
    check.finish()


def file_digest(path: Path | str, algorithm: str = "sha512", nofollow: bool = False) -> str:
    """The hex digest of a file's content, read in chunks (never whole).

    `nofollow`: refuse a symlink in the last component rather than read what
    it points to (a source swapped for a link must not smuggle in another file).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    with open(os.open(path, flags), "rb", buffering=0) as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha512_file(path: Path | str) -> str:
    return file_digest(path, "sha512")


def pin_file(path: Path | str | int) -> tuple[str, int]:
    """A file's sha512 (hex) and size, from one read of its bytes: what pod.json pins.

    `path` may be a descriptor open for reading (closed after)."""
    return digest_and_size(path, "sha512")


def digest_and_size(path: Path | str | int, algorithm: str) -> tuple[str, int]:
    """A file's digest (hex) by `algorithm` and its size, from one read of its bytes.

    `path` may be a descriptor open for reading (closed after)."""
    digest = hashlib.new(algorithm)
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


class HashingReader:
    """Reads through to `raw`, feeding every byte to `digest` on the way."""

    def __init__(self, raw, digest=None):
        self._raw = raw
        self.digest = digest if digest is not None else hashlib.sha512()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class HashingWriter:
    """Writes through to `out`, feeding every byte to `digest` on the way."""

    def __init__(self, out: Writable, digest):
        self._out = out
        self._digest = digest

    def write(self, data: bytes | memoryview) -> int:
        self._digest.update(data)
        return self._out.write(data)


def copy_file_verified(src: Path | int, dest: Path, check: Check, mode: int = 0o644) -> None:
    """Copy `src` (a path, or a descriptor open for reading, closed after) to the new file `dest`
    through `check`; `dest` is removed if it fails."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out, open(src, "rb", buffering=0) as f:
            copy_verified(f.readinto, out, check)
            os.fchmod(out.fileno(), mode)
        check.finish()
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
