"""The one way podrelease asks git anything: bounded in time, never writing the index.

Every call runs `git -C <folder>` with no standard input, `GIT_OPTIONAL_LOCKS=0`
(so `git status` does not refresh the index under a concurrent user) and a
timeout: a huge tree makes git slow, not stuck, and a stuck git must not
hold a release forever. A missing `git` is `GitMissing`; a timeout is a
one-line `UserError` naming the command and the folder.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import UserError

TIMEOUT = 60.0  # seconds; `git status` on a huge tree is slow, not stuck


class GitMissing(Exception):
    """No `git` executable on this machine."""


def command(folder: Path | str, *args: str) -> list[str]:
    return ["git", "-C", str(folder), *args]


def environment() -> dict[str, str]:
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}


def run(folder: Path | str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """`git -C folder args...`, its output as text; raises GitMissing or a timeout UserError."""
    try:
        return subprocess.run(
            command(folder, *args), capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, env=environment(),
        )
    except FileNotFoundError:
        raise GitMissing() from None
    except subprocess.TimeoutExpired:
        raise UserError(None, None, f"git {args[0]} did not finish within {timeout:g} s in {folder}") from None


def stream(folder: Path | str, *args: str) -> subprocess.Popen:
    """`git -C folder args...` with its standard output as a byte stream (e.g. `git archive`).

    The caller reads stdout to its end, then calls `finish` for the status.
    """
    try:
        return subprocess.Popen(
            command(folder, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env=environment(),
        )
    except FileNotFoundError:
        raise GitMissing() from None


def finish(process: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Wait for a streamed git; its exit status and what it said on stderr."""
    try:
        error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
        return process.wait(timeout=timeout), error
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        args = process.args
        assert isinstance(args, list)  # made by `stream`: the list `command` builds
        raise UserError(None, None, f"git {args[3]} did not finish within {timeout:g} s") from None


def toplevel(folder: Path | str) -> Path | None:
    """The top of the git work tree holding `folder`, or None (no checkout, or no git)."""
    try:
        result = run(folder, "rev-parse", "--show-toplevel")
    except GitMissing:
        return None
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def commit_of(checkout: Path | str, revision: str) -> str | None:
    """The full commit id `revision` names in the checkout, or None if it names none."""
    if revision.startswith("-"):
        return None
    result = run(checkout, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None
