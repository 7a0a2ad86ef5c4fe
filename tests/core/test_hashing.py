"""The one inflater (ISA-L's), as gzip(1) reads a stream: what it accepts and what it refuses."""

from __future__ import annotations

import gzip
import hashlib
import os

import pytest

from podrelease.core.hashing import MAX_INFLATE, AciDigester, GzipInflater, InflateError

DATA = os.urandom(300_000) + bytes(3 * MAX_INFLATE)  # incompressible, then very compressible


def inflate(stream: bytes, piece: int = 65536) -> bytes:
    out = bytearray()
    inflater = GzipInflater(out.extend)
    for i in range(0, len(stream), piece):
        inflater.feed(memoryview(stream)[i:i + piece])
    inflater.close()
    return bytes(out)


def test_a_stream_inflates_to_what_was_deflated_whatever_the_pieces_it_arrives_in():
    stream = gzip.compress(DATA)
    assert inflate(gzip.compress(b"hello" * 1000), 1) == b"hello" * 1000
    assert inflate(stream, 7777) == DATA
    assert inflate(stream, 1 << 20) == DATA


def test_inflated_output_comes_in_bounded_pieces():
    pieces: list[int] = []
    inflater = GzipInflater(lambda piece: pieces.append(len(piece)))
    inflater.feed(gzip.compress(bytes(50 * MAX_INFLATE)))  # a small bomb: 50 MiB from 50 KiB
    inflater.close()
    assert max(pieces) <= MAX_INFLATE and sum(pieces) == 50 * MAX_INFLATE


def test_concatenated_members_are_one_stream():
    assert inflate(gzip.compress(b"abc") + gzip.compress(b"def")) == b"abcdef"


def test_zeros_after_the_last_member_are_padding():
    assert inflate(gzip.compress(DATA) + bytes(1000)) == DATA


def test_garbage_after_the_last_member_is_refused():
    with pytest.raises(InflateError, match="garbage after the end"):
        inflate(gzip.compress(DATA) + b"\0\0junk")


def test_a_stream_that_ends_early_is_refused():
    with pytest.raises(InflateError, match="ends early"):
        inflate(gzip.compress(DATA)[:-100])


@pytest.mark.parametrize("where", [-8, -2], ids=["crc32", "length"])
def test_a_wrong_trailer_is_refused(where):
    stream = bytearray(gzip.compress(DATA))
    stream[where] ^= 1
    with pytest.raises(InflateError):
        inflate(bytes(stream))


def test_the_digester_hashes_the_file_as_stored_and_the_tar_inside():
    stream = gzip.compress(DATA)
    digester = AciDigester(background=True)
    for i in range(0, len(stream), 100_000):
        digester.update(memoryview(stream)[i:i + 100_000])
    found = digester.finish()
    assert found.error is None and found.compressed and found.size == len(stream)
    assert found.file_sha512 == hashlib.sha512(stream).hexdigest()
    assert found.tar_sha512 == hashlib.sha512(DATA).hexdigest()
