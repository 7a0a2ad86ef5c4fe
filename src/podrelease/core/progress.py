"""Progress of a long transfer on a terminal: bytes and files, rate and ETA; nothing otherwise.

One small helper for every long job that moves bytes: image builds (the
release side) and downloads (ops-onboard). The bar is tqdm's, drawn on
stderr, and only when stderr is a terminal: output into a pipe, a file or a
CI log never holds a control character. A job shorter than `DELAY`
seconds shows nothing, and a finished bar is erased, so doit's own lines
(`.  image:...`, on stdout) read as they always did.

tqdm rather than rich: one pure-Python package with no dependency, it draws
a single line with `\\r` on stderr and leaves stdout alone, where doit's
reporter writes; rich's live display takes over the terminal, which fights
doit's reporter and doit's `-P` worker processes writing beside it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

DELAY = 1.0  # seconds before a bar appears: a quick job shows nothing
T = TypeVar("T")


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether progress would be drawn on `stream` (stderr by default)."""
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


class Progress:
    """`with Progress("image //web:frontend 1.1.0", total_bytes, total_files) as progress: progress.advance(n)`.

    Totals may be None (unknown): the bar then shows what was done and the
    rate, without ETA. When stderr is not a terminal every call does nothing.
    """

    def __init__(self, description: str, total_bytes: int | None = None, total_files: int | None = None,
                 stream: IO[str] | None = None, delay: float = DELAY, interval: float = 0.5,
                 shown: bool | None = None, leave: bool = False, start: int = 0):
        """`shown` forces the bar on or off (None: on a terminal); `leave` keeps the finished
        line (a download) instead of erasing it (a build, between doit's lines); `start`
        is what was done before (a resumed download)."""
        stream = stream if stream is not None else sys.stderr
        self.enabled = on_terminal(stream) if shown is None else shown
        self.total_files = total_files
        self.files = 0
        self._bar: Any = None
        if self.enabled:
            size = _fixed_size(stream)
            self._bar = tqdm(
                total=total_bytes, desc=description, unit="B", unit_scale=True, unit_divisor=1024, initial=start,
                file=stream, leave=leave, delay=delay, mininterval=interval,
                dynamic_ncols=size is None, ncols=size and size[0], nrows=size and size[1],
            )

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        if self._bar is None:
            return
        self.files += files
        if files:
            of = f"/{self.total_files}" if self.total_files is not None else ""
            self._bar.set_postfix_str(f"{self.files}{of} files", refresh=False)
        self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counting(self, out: Any) -> Any:
        """A writer that passes everything to `out` and counts its bytes here."""
        return out if self._bar is None else _CountingWriter(out, self)

    def each_file(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, counting one file as each is finished (when the next one is asked for)."""
        if self._bar is None:
            yield from items
            return
        started = False
        for item in items:
            if started:
                self.advance(files=1)
            started = True
            yield item
        if started:
            self.advance(files=1)


def _fixed_size(stream: IO[str]) -> tuple[int, int] | None:
    """None: follow the terminal's size. One that says it has no size (a bare pty) counts as 80x24:
    tqdm would draw nothing in zero columns, and hide a bar below row zero."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return (80, 24)
    return None if size.columns > 0 and size.lines > 0 else (80, 24)


class _CountingWriter:
    def __init__(self, out: Any, progress: Progress):
        self._out = out
        self._progress = progress

    def write(self, data: Any) -> Any:
        written = self._out.write(data)
        self._progress.advance(len(data))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)
