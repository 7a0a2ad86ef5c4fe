"""Deterministic tar, hashed as it streams, compressed by a parallel gzip.

An image id is the sha512 of the *uncompressed* tar, so the tar bytes must
depend on nothing but the entries: names in sorted order, mtime 0, uid/gid 0,
no user or group names, modes as given (the rules of Bazel's rules_pkg). Long
names use PAX extended headers (POSIX.1-2001, what `tarfile` writes by
default), which are themselves deterministic.

The tar is produced in one pass: file data is read in big chunks, hashed and
handed to `ParallelGzipWriter`, which compresses fixed-size blocks on every
core the way pigz does and still writes a single standard gzip stream whose
bytes do not depend on the number of cores.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from isal import isal_zlib

from ..core.errors import ContractError
from ..core.hashing import Writable
from ..core.safeopen import open_real

CHUNK_SIZE = 1 << 20  # file data is read (and hashed) this much at a time
BLOCK_SIZE = 1 << 20  # gzip input block compressed by one worker
WINDOW_SIZE = 1 << 15  # deflate's window: the dictionary each block is primed with
GZIP_LEVEL = 3  # ISA-L's best level


@dataclass(frozen=True)
class Deflate:
    """Which raw deflate compresses the blocks, at which level."""

    library: Any  # a zlib-like module: compressobj, DEFLATED, MAX_WBITS, Z_SYNC_FLUSH, Z_FINISH
    level: int


# ISA-L's deflate (python-isal) runs about 3x zlib's at level 6 for a few percent more
# bytes: right for image.aci, whose id is the sha512 of the *uncompressed* tar.
FAST = Deflate(isal_zlib, GZIP_LEVEL)
# zlib's: the same bytes from any machine's zlib, for artifacts identified by their
# compressed bytes (a volume tarball's sha512 is what pod.json records).
PORTABLE = Deflate(zlib, 6)
# ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no name, no time, no host.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

TAR_FORMAT: Literal[2] = tarfile.PAX_FORMAT
TAR_ENCODING = "utf-8"
_TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}


class SourceChangedError(OSError):
    """A file changed size while it was being archived: the tar would lie."""


@dataclass(frozen=True)
class Entry:
    """One tar member.

    `name` is the path inside the tar: no leading `/`, no trailing `/`.
    A file's content comes from `source` (a path, streamed in chunks, never
    held whole) or from `data` (small inline bytes such as a manifest).
    """

    name: str
    kind: Literal["file", "dir", "symlink"]
    mode: int
    source: str | None = None
    data: bytes | None = None
    linkname: str | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("/") or self.name.endswith("/"):
            raise ValueError(f"tar entry name {self.name!r} must be relative, without a trailing '/'")
        if self.kind not in _TAR_TYPES:
            raise ValueError(f"tar entry {self.name!r}: unknown kind {self.kind!r}")
        if not 0 <= self.mode <= 0o7777:
            raise ValueError(f"tar entry {self.name!r}: mode {self.mode:o} is not a permission mode")
        if self.kind == "file" and (self.source is None) == (self.data is None):
            raise ValueError(f"tar entry {self.name!r}: a file needs exactly one of source and data")
        if self.kind == "symlink" and not self.linkname:
            raise ValueError(f"tar entry {self.name!r}: a symlink needs a linkname")


def sort_key(name: str) -> bytes:
    """The order of tar entries: the bytes of their names, as `tar --sort=name` compares.

    Comparing encoded bytes rather than `str` keeps names that are not valid
    UTF-8 (carried as surrogate escapes) in byte order too.
    """
    return name.encode(TAR_ENCODING, "surrogateescape")


def write_tar(
    entries: Iterable[Entry],
    out: Writable,
    file_digests: dict[str, str] | None = None,
    subtree: tuple[Writable, str] | None = None,
) -> str:
    """Write a deterministic tar of `entries` to `out`; return the hex sha512 of its bytes.

    Entries must arrive sorted by `sort_key` of their names, without
    duplicates: sorting is the caller's job because only the caller knows
    whether the list fits in memory. If `file_digests` is given it is filled
    with `name -> sha256 hex` of each file's content, from the same read.
    `subtree = (out2, prefix)` also writes, to `out2`, the tar of the entries
    below `prefix/` with that prefix removed (an image's rootfs as an OCI
    layer), from the same read of each file: a source is opened once.
    `out.write` must not keep the buffer it is given (file objects don't).
    """
    writer = _TarWriter(out, file_digests)
    inner = _TarWriter(subtree[0], None, hashed=False) if subtree else None
    below = f"{subtree[1]}/" if subtree else ""
    previous: bytes | None = None
    for entry in entries:
        key = sort_key(entry.name)
        if previous is not None and key <= previous:
            raise ValueError(f"tar entries out of order or duplicated at {entry.name!r}")
        previous = key
        if inner is not None and entry.name.startswith(below):
            writer.add(entry, also=(inner, replace(entry, name=entry.name[len(below):])))
        else:
            writer.add(entry)
    if inner is not None:
        inner.finish()
    return writer.finish()


class _TarWriter:
    """Appends headers and data to `out`, hashing every byte on the way."""

    def __init__(self, out: Writable, file_digests: dict[str, str] | None, hashed: bool = True):
        self._out = out
        self._sha512 = hashlib.sha512() if hashed else None
        self._offset = 0
        self._file_digests = file_digests
        self._chunk: memoryview | None = None  # allocated on the first file read: a `subtree` writer reads none

    def add(self, entry: Entry, also: tuple[_TarWriter, Entry] | None = None) -> None:
        """Append `entry`; with `also`, append the same content to another tar under another name."""
        if entry.kind == "file" and entry.source is not None:
            self._add_source_file(entry, also)
            return
        size = len(entry.data) if entry.data is not None else 0
        self._add_header(entry, size)
        if also is not None:
            also[0]._add_header(also[1], size)
        if entry.kind == "file" and entry.data is not None:
            self._add_data(entry.name, [entry.data], also)

    def finish(self) -> str:
        """End-of-archive marker and record padding, exactly as `tarfile.close` writes them."""
        self._emit(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self._offset % tarfile.RECORDSIZE
        if remainder:
            self._emit(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
        return self._sha512.hexdigest() if self._sha512 is not None else ""

    def _add_source_file(self, entry: Entry, also: tuple[_TarWriter, Entry] | None) -> None:
        assert entry.source is not None  # `add` sends only entries with a source here
        # Opened from / without following a link on any component: a source (or a directory
        # above it) swapped for a symlink must not smuggle in another file (core.safeopen).
        try:
            fd = open_real(entry.source)
        except ContractError as e:
            raise SourceChangedError(f"{e}: it changed since it was checked") from None
        with open(fd, "rb", buffering=0) as source:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise SourceChangedError(f"{entry.source}: not a regular file any more")
            self._add_header(entry, status.st_size)
            if also is not None:
                also[0]._add_header(also[1], status.st_size)
            if self._chunk is None:
                self._chunk = memoryview(bytearray(CHUNK_SIZE))
            self._add_data(entry.name, _read_exactly(source, entry.source, status.st_size, self._chunk), also)

    def _add_header(self, entry: Entry, size: int) -> None:
        info = tarfile.TarInfo(entry.name)
        info.type = _TAR_TYPES[entry.kind]
        info.mode = entry.mode
        info.size = size
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.linkname = entry.linkname or ""
        self._emit(info.tobuf(TAR_FORMAT, TAR_ENCODING, "surrogateescape"))

    def _add_data(self, name: str, chunks: Iterable[bytes | memoryview], also: tuple[_TarWriter, Entry] | None = None) -> None:
        digest = hashlib.sha256() if self._file_digests is not None else None
        size = 0
        for chunk in chunks:
            self._emit(chunk)
            if also is not None:
                also[0]._emit(chunk)
            if digest is not None:
                digest.update(chunk)
            size += len(chunk)
        if digest is not None and self._file_digests is not None:
            self._file_digests[name] = digest.hexdigest()
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            self._emit(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
            if also is not None:
                also[0]._emit(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def _emit(self, data: bytes | memoryview) -> None:
        if self._sha512 is not None:
            self._sha512.update(data)
        self._out.write(data)
        self._offset += len(data)


def _read_exactly(source: io.RawIOBase, path: str, size: int, buffer: memoryview) -> Iterable[memoryview]:
    """Yield `size` bytes of `source` through `buffer`; raise if the file is not that size.

    The header already promised `size` bytes, so a file that shrinks or grows
    while it is read would give a tar that does not match the source.
    """
    remaining = size
    while remaining:
        count = source.readinto(buffer[: min(remaining, len(buffer))])
        if not count:
            raise SourceChangedError(f"{path}: file shrank while it was archived")
        remaining -= count
        yield buffer[:count]
    if source.read(1):
        raise SourceChangedError(f"{path}: file grew while it was archived")


def default_workers() -> int:
    """The cores this process may run on (not all the machine's cores under a CPU mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ParallelGzipWriter:
    """A write-only file that gzips what it is given on all cores, like pigz.

    Input is cut into fixed `block_size` blocks; each is raw-deflated by a
    worker thread (ISA-L releases the GIL, as zlib does) with the previous 32 KiB as its
    dictionary, sync-flushed so blocks concatenate into one deflate stream,
    and the last one finished. Because block boundaries never depend on the
    number of workers, the output bytes don't either.

    Memory is bounded whatever the input size: at most `2 * workers` blocks
    are in flight, and their buffers are recycled rather than reallocated
    (fresh 1 MiB allocations fragment the heap and inflate the RSS).

    `close()` finishes the stream (trailer) but leaves `out` open; leaving a
    `with` block by an exception abandons the stream without a trailer.
    """

    def __init__(
        self,
        out: Writable,
        *,
        deflate: Deflate = FAST,
        block_size: int = BLOCK_SIZE,
        workers: int | None = None,
    ):
        if block_size < WINDOW_SIZE:
            raise ValueError(f"block_size must be at least {WINDOW_SIZE} to hold a full dictionary")
        self._out = out
        self._deflate = deflate
        workers = workers or default_workers()
        self._max_in_flight = 2 * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gzip")
        self._in_flight: deque[tuple[Future[list[bytes]], bytearray]] = deque()
        self._spare: list[bytearray] = []
        self._block = bytearray(block_size)
        self._filled = 0
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        self._closed = False
        out.write(GZIP_HEADER)

    def write(self, data: bytes | memoryview) -> int:
        """Copy `data` into the current block, handing out full blocks.

        A full block is only submitted once more data follows it, because the
        final block must be compressed differently (Z_FINISH).
        """
        view = memoryview(data).cast("B")
        written = len(view)
        while view:
            if self._filled == len(self._block):
                self._submit(last=False)
            count = min(len(view), len(self._block) - self._filled)
            self._block[self._filled : self._filled + count] = view[:count]
            self._filled += count
            view = view[count:]
        return written

    def close(self) -> None:
        """Compress what is left, write every block in order, then CRC32 and ISIZE."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(last=True)
            while self._in_flight:
                self._write_oldest()
            self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(cancel_futures=True)

    def abort(self) -> None:
        """Stop the workers without finishing the stream (the output is garbage)."""
        self._closed = True
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _submit(self, last: bool) -> None:
        block = memoryview(self._block)[: self._filled]
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        future = self._pool.submit(_deflate_block, block, self._dictionary, self._deflate, last)
        self._in_flight.append((future, self._block))
        self._dictionary = bytes(block[-WINDOW_SIZE:])  # a copy: the block will be reused
        self._block = self._spare.pop() if self._spare else bytearray(len(self._block))
        self._filled = 0
        while len(self._in_flight) > self._max_in_flight:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, block = self._in_flight.popleft()
        for piece in future.result():
            self._out.write(piece)
        self._spare.append(block)


def _deflate_block(block: memoryview, dictionary: bytes, deflate: Deflate, last: bool) -> list[bytes]:
    """Raw-deflate one block so that it continues the stream the previous block began.

    Priming with the previous block's tail lets matches reach back across the
    boundary, so compression is as good as a single-threaded stream's. The
    two pieces are returned unjoined to save a copy.
    """
    lib = deflate.library
    if dictionary:
        compressor = lib.compressobj(deflate.level, lib.DEFLATED, -lib.MAX_WBITS, zdict=dictionary)
    else:
        compressor = lib.compressobj(deflate.level, lib.DEFLATED, -lib.MAX_WBITS)
    return [compressor.compress(block), compressor.flush(lib.Z_FINISH if last else lib.Z_SYNC_FLUSH)]
