"""Sources at a recorded revision: images built from the commit an instruction names.

When an instruction records `revision:` and `shipyard/` is in a git checkout,
its images are built from that commit's files (`git archive` into a
temporary folder), not from whatever the working tree holds today. Setting
PODRELEASE_WORKING_TREE=1 builds from the working tree instead; the image's
build.json then says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.errors import UserError

WORKING_TREE_ENV = "PODRELEASE_WORKING_TREE"


def working_tree_forced() -> bool:
    return os.environ.get(WORKING_TREE_ENV, "") not in ("", "0")


def _git(checkout: Path | str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def checkout_of(folder: Path) -> Path | None:
    """The top of the git work tree holding `folder`, or None."""
    try:
        result = _git(folder, "rev-parse", "--show-toplevel")
    except OSError:
        return None  # no git on this machine
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def commit_of(checkout: Path, revision: str) -> str | None:
    """The full commit id `revision` names in the checkout, or None if it names none."""
    if revision.startswith("-"):
        return None
    result = _git(checkout, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


@contextmanager
def folder_at(checkout: Path, commit: str, folder: Path) -> Iterator[Path]:
    """`folder` of the working tree as it was at `commit`, in a temporary directory."""
    relative = os.path.relpath(os.path.realpath(folder), os.path.realpath(checkout))
    scratch = tempfile.mkdtemp(prefix="podrelease-rev-")
    try:
        archive = subprocess.Popen(
            ["git", "-C", str(checkout), "archive", "--format=tar", commit, "--", relative],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(scratch, filter="tar")  # keeps symlinks as they are (sources may hold absolute ones)
        error = archive.stderr.read().decode(errors="replace").strip()
        if archive.wait() != 0:
            raise UserError(relative, None, f"not in revision {commit[:12]}: {error.splitlines()[-1] if error else 'git archive failed'}")
        yield Path(scratch) / relative
    except tarfile.ReadError:
        raise UserError(relative, None, f"not in revision {commit[:12]}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
