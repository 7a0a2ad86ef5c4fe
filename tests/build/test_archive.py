"""Deterministic tar and parallel gzip (podrelease.archive)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile

import pytest
from isal import igzip

from podrelease.build.archive import GZIP_LEVEL, Entry, ParallelGzipWriter, SourceChangedError, write_tar

SMALL_BLOCK = 1 << 16  # several gzip blocks from a few hundred KiB of input


def tar_bytes(entries, **kwargs) -> bytes:
    out = io.BytesIO()
    write_tar(entries, out, **kwargs)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def gzipped(data: bytes, workers: int, block_size: int = SMALL_BLOCK) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, workers=workers, block_size=block_size) as writer:
        for start in range(0, len(data), 100_000):  # writes that straddle block boundaries
            writer.write(data[start : start + 100_000])
    return out.getvalue()


def sample(size: int) -> bytes:
    """Compressible but not trivial: numbered lines with some noise."""
    noise = hashlib.sha512(b"seed").hexdigest().encode()
    lines = b"".join(b"line %d %s\n" % (i, noise[i % 97 :]) for i in range(size // 80 + 1))
    return lines[:size]


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(sample(3 * 1024 * 1024 + 17))
    return path


def test_tar_bytes_equal_tarfile_output_for_same_members(big_file):
    entries = [
        Entry("a", "dir", 0o755),
        Entry("a/big", "file", 0o644, source=str(big_file)),
        Entry("a/link", "symlink", 0o777, linkname="big"),
        Entry("m", "file", 0o600, data=b"hello"),
    ]
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}[entry.kind]
            info.linkname = entry.linkname or ""
            content = entry.data if entry.data is not None else big_file.read_bytes() if entry.source else None
            info.size = len(content) if content is not None else 0
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    assert tar_bytes(entries) == expected.getvalue()


def test_returns_sha512_of_the_tar_bytes(big_file):
    out = io.BytesIO()
    digest = write_tar([Entry("big", "file", 0o644, source=str(big_file))], out)
    assert digest == hashlib.sha512(out.getvalue()).hexdigest()


def test_headers_have_zero_time_owner_and_no_names(big_file):
    os.utime(big_file, (1_700_000_000, 1_700_000_000))
    if os.geteuid() == 0:
        os.chown(big_file, 1234, 5678)
    data = tar_bytes([Entry("big", "file", 0o644, source=str(big_file)), Entry("d", "dir", 0o755)])
    for info in members(data):
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")


def test_modes_are_kept_including_setuid_and_sticky():
    entries = [
        Entry("bin", "file", 0o4755, data=b"x"),
        Entry("secret", "file", 0o600, data=b"x"),
        Entry("tmp", "dir", 0o1777),
    ]
    assert {info.name: info.mode for info in members(tar_bytes(entries))} == {"bin": 0o4755, "secret": 0o600, "tmp": 0o1777}


def test_symlinks_are_stored_as_symlinks():
    data = tar_bytes([Entry("abs", "symlink", 0o777, linkname="/usr/bin/env"), Entry("rel", "symlink", 0o777, linkname="../x")])
    assert [(info.name, info.issym(), info.linkname) for info in members(data)] == [
        ("abs", True, "/usr/bin/env"),
        ("rel", True, "../x"),
    ]


def test_long_and_non_ascii_names_round_trip():
    long_name = "/".join(["segment"] * 30)
    data = tar_bytes([Entry(long_name, "file", 0o644, data=b"x"), Entry("zé", "file", 0o644, data=b"y")])
    assert [info.name for info in members(data)] == [long_name, "zé"]


def test_unsorted_entries_are_rejected():
    with pytest.raises(ValueError, match="out of order"):
        tar_bytes([Entry("b", "file", 0o644, data=b""), Entry("a", "file", 0o644, data=b"")])


def test_duplicate_entries_are_rejected():
    with pytest.raises(ValueError, match="duplicated"):
        tar_bytes([Entry("a", "file", 0o644, data=b""), Entry("a", "file", 0o644, data=b"")])


def test_entry_names_must_be_relative_without_trailing_slash():
    for name in ("/abs", "dir/", ""):
        with pytest.raises(ValueError):
            Entry(name, "dir", 0o755)


def test_file_digests_are_sha256_of_each_file(big_file):
    digests: dict[str, str] = {}
    tar_bytes([Entry("big", "file", 0o644, source=str(big_file)), Entry("m", "file", 0o644, data=b"hi")], file_digests=digests)
    assert digests == {"big": hashlib.sha256(big_file.read_bytes()).hexdigest(), "m": hashlib.sha256(b"hi").hexdigest()}


class MutatingOutput(io.BytesIO):
    """Changes the source file right after its header was written."""

    def __init__(self, source, change):
        super().__init__()
        self.source, self.change, self.done = source, change, False

    def write(self, data):
        if not self.done and self.tell() > 0:
            self.done = True
            self.change(self.source)
        return super().write(data)


@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")  # the body's lambda leaves its file to the garbage collector
def test_file_that_grows_while_read_raises(big_file):
    out = MutatingOutput(big_file, lambda path: path.open("ab").write(b"more"))
    with pytest.raises(SourceChangedError, match="grew"):
        write_tar([Entry("big", "file", 0o644, source=str(big_file))], out)


def test_file_that_shrinks_while_read_raises(big_file):
    out = MutatingOutput(big_file, lambda path: os.truncate(path, 10))
    with pytest.raises(SourceChangedError, match="shrank"):
        write_tar([Entry("big", "file", 0o644, source=str(big_file))], out)


def test_gzip_output_is_identical_with_one_and_two_workers():
    data = sample(1_000_000)
    assert gzipped(data, workers=1) == gzipped(data, workers=2)


def test_gzip_output_is_read_by_gzip_command():
    data = sample(1_000_000)
    result = subprocess.run(["gzip", "-dc"], input=gzipped(data, workers=2), capture_output=True, check=True)
    assert result.stdout == data


def test_gzip_output_is_read_by_python_gzip():
    data = sample(1_000_000) + os.urandom(300_000)
    assert gzip.decompress(gzipped(data, workers=2)) == data


def test_gzip_header_has_no_time_and_a_fixed_os():
    header = gzipped(b"x", workers=1)[:10]
    assert header == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_gzip_of_nothing_is_a_valid_empty_stream():
    assert gzip.decompress(gzipped(b"", workers=2)) == b""


def test_gzip_of_exactly_one_block_is_valid():
    data = sample(SMALL_BLOCK)
    assert gzip.decompress(gzipped(data, workers=2)) == data


def test_gzip_compresses_as_well_as_single_stream_gzip():
    # the same deflate (ISA-L at GZIP_LEVEL) in one stream: priming each block with the
    # previous one's tail must lose nothing to the parallel split
    data = sample(1_000_000)
    assert len(gzipped(data, workers=2)) <= len(igzip.compress(data, GZIP_LEVEL)) * 1.01


def test_gzip_abandoned_by_an_exception_writes_no_trailer():
    out = io.BytesIO()
    with pytest.raises(RuntimeError):
        with ParallelGzipWriter(out, workers=2, block_size=SMALL_BLOCK) as writer:
            writer.write(sample(300_000))
            raise RuntimeError("stop")
    with pytest.raises(EOFError):
        gzip.decompress(out.getvalue())
