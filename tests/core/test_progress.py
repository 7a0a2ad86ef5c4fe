"""Progress on a terminal only: bytes and files, rate and ETA; nothing into a pipe or a file."""

from __future__ import annotations

import io

from podrelease.core.progress import Progress

from conftest import copy_example, doit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_bytes_files_and_rate():
    terminal = Terminal()
    with Progress("image //web:frontend 1.1.0", total_bytes=4096, total_files=2, stream=terminal, delay=0, interval=0) as progress:
        progress.advance(2048, files=1)
        progress.advance(2048, files=1)
        progress.close()
    drawn = terminal.getvalue()
    assert "image //web:frontend 1.1.0" in drawn
    assert "image //web:frontend 1.1.0:  50%" in drawn and "2/2 file" in drawn
    assert "B/s" in drawn


def test_a_stream_that_is_not_a_terminal_gets_nothing():
    stream = io.StringIO()
    with Progress("image //web:frontend 1.1.0", total_bytes=4096, total_files=2, stream=stream, delay=0) as progress:
        assert not progress.enabled
        progress.advance(4096, files=2)
    assert stream.getvalue() == ""


def test_counting_writer_and_file_counter_pass_everything_through():
    terminal, out = Terminal(), io.BytesIO()
    with Progress("copy", total_files=3, stream=terminal, delay=0) as progress:
        writer = progress.counting(out)
        for item in progress.each_file([b"a", b"bb", b"ccc"]):
            writer.write(item)
        assert (progress.files, out.getvalue()) == (3, b"abbccc")


def test_a_release_into_a_pipe_prints_no_progress(tmp_path):
    root = copy_example(tmp_path / "root")
    result = doit(root, check=True)
    assert "\r" not in result.stdout + result.stderr
    assert "B/s" not in result.stderr
