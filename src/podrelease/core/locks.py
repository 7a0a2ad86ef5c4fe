"""`flock(2)` locks: one per release-root artifact, and one per ops-onboard DIR.

`flock` locks die with their process, so a lock held by a killed run never
blocks the next one, and a lock file is created once and never written, so
holding a lock changes nothing a reader sees.

- `holding(root, artifact)`: per artifact rather than per root, so two runs
  releasing different pods still build in parallel, while two runs needing
  the same image wait for each other, and the second finds it built.
- `exclusive(path, timeout, on_wait)`: one `ops-onboard` at a time per DIR;
  a second command waits, saying so once, and gives up after a timeout.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ContractError, LockTimeout
from .fsops import make_dirs

LOCKS = Path(".podrelease") / "locks"
POLL = 0.05  # seconds between attempts while waiting for `exclusive`


@contextmanager
def holding(root: Path, artifact: str) -> Iterator[None]:
    """Hold the lock of `artifact` (a task name) under `root`, waiting for it."""
    folder = root / LOCKS
    make_dirs(folder)
    path = folder / (hashlib.sha256(artifact.encode()).hexdigest()[:32] + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def exclusive(path: Path, timeout: float, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the `with` block."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:
        try:  # enough to lock, for a user who may only read DIR (list, verify)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ContractError(f"cannot open the lock {path}: {e.strerror}") from None
    except OSError as e:
        raise ContractError(f"cannot open the lock {path}: {e.strerror}") from None
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
