"""One lock per artifact, so concurrent doit processes build each thing once.

Per artifact rather than per root: two runs releasing different pods still
build in parallel, while two runs needing the same image wait for each
other, and the second finds it built. `flock` locks die with their process,
so a lock held by a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .atomic import make_dirs

LOCKS = Path(".podrelease") / "locks"


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
