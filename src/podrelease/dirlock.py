"""One `ops-onboard` at a time per DIR: an exclusive `flock(2)` on `DIR/.lock`.

A second command waits, saying so once on stderr, and gives up with a clear
error after a timeout. The lock file is created once and never written, so
holding the lock changes nothing in DIR; the kernel drops the lock when the
process dies, so a crash never leaves DIR locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .onboard_errors import LockTimeout, OnboardError

POLL = 0.05  # seconds between attempts while waiting


@contextmanager
def exclusive(path: Path, timeout: float, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the `with` block."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:
        try:  # enough to lock, for a user who may only read DIR (list, verify)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise OnboardError(f"cannot open the lock {path}: {e.strerror}") from None
    except OSError as e:
        raise OnboardError(f"cannot open the lock {path}: {e.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"gave up after {timeout:g}s waiting for {path}: another ops-onboard is still working on this root"
                    ) from None
                if not waited:
                    waited = True
                    on_wait(f"waiting for {path}: another ops-onboard is working on this root (up to {timeout:g}s)")
                time.sleep(POLL)
        yield
    finally:
        os.close(fd)  # releases the lock
