"""Running the real command lines on hostile input, the way every hostile test checks them.

    result = bounded([OPS_ONBOARD, "--root", str(ops), "deploy", str(bundle)])
    line = one_line_error(result, "ops-onboard")

`bounded` runs a command in a child limited to MEMORY bytes of address space
(`RLIMIT_AS`, set between fork and exec), to files of at most FILE_SIZE bytes
(`RLIMIT_FSIZE`: a bigger write fails) and killed after TIMEOUT seconds:
a test that would need gigabytes or run forever fails with MemoryError,
a traceback or TimeoutExpired instead of taking the machine down. The
bounds are generous for the work asked, so they assert "bounded", never a
speed. `one_line_error` checks the rest of the contract: a non-zero exit, one
line on stderr, no traceback, no raw control character.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

MEMORY = 1 << 30  # bytes of address space for each command under test
FILE_SIZE = 1 << 30  # bytes of any one file it writes
TIMEOUT = 120  # seconds
MAX_LINE = 600  # characters: an error quotes what is wrong, it does not dump it
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# The console script pip installed next to this interpreter (not a version manager's shim), else the PATH's.
_BESIDE = Path(sys.executable).parent / "ops-onboard"
OPS_ONBOARD = str(_BESIDE) if _BESIDE.exists() else (shutil.which("ops-onboard") or "ops-onboard")


def _limit(memory: int, file_size: int):
    def in_child() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return in_child


def bounded(command: Sequence[str], *, cwd: Path | None = None, memory: int = MEMORY, timeout: float = TIMEOUT,
            file_size: int = FILE_SIZE, env: dict | None = None) -> subprocess.CompletedProcess:
    """`command` in a child with at most `memory` bytes of address space and files of at most
    `file_size` bytes, killed after `timeout` seconds."""
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=_limit(memory, file_size),
                          env={**os.environ, **(env or {})}, errors="surrogateescape")


def onboard(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """The real `ops-onboard --root root args...`, bounded."""
    return bounded([OPS_ONBOARD, "--root", str(root), *args], **kwargs)


def doit(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """The real `doit args...` in the release root `root`, bounded."""
    return bounded([sys.executable, "-m", "doit", *args], cwd=root, **kwargs)


def one_line_error(result: subprocess.CompletedProcess, prog: str = "ops-onboard", status: int | None = None) -> str:
    """The command failed (with exit `status`, if given) with exactly one short line on stderr,
    `<prog>...: ...`, not an internal error; returns it."""
    assert result.returncode != 0 if status is None else result.returncode == status, \
        (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    line = lines[0]
    assert line.startswith(prog), line[:MAX_LINE]
    assert len(line) <= MAX_LINE, f"a {len(line)}-character error line: {line[:200]}..."
    assert not RAW_CONTROL.search(line), repr(line[:MAX_LINE])
    assert "internal error" not in line, line[:MAX_LINE]
    return line


def closed_directory(where: Path, secret: str) -> Path:
    """`where`, made a directory only its owner may enter, holding a file `secret` readable by
    everyone: what a check of the whole path must not let out."""
    where.mkdir()
    (where / "secret").write_text(secret)
    os.chmod(where / "secret", 0o644)
    os.chmod(where, 0o700)
    return where
