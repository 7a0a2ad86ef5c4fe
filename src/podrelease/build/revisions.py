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
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core import git
from ..core.errors import UserError

WORKING_TREE_ENV = "PODRELEASE_WORKING_TREE"


def working_tree_forced() -> bool:
    return os.environ.get(WORKING_TREE_ENV, "") not in ("", "0")


def checkout_of(folder: Path) -> Path | None:
    """The top of the git work tree holding `folder`, or None."""
    return git.toplevel(folder)


def commit_of(checkout: Path, revision: str) -> str | None:
    """The full commit id `revision` names in the checkout, or None if it names none."""
    return git.commit_of(checkout, revision)


@contextmanager
def folder_at(checkout: Path, commit: str, folder: Path) -> Iterator[Path]:
    """`folder` of the working tree as it was at `commit`, in a temporary directory."""
    relative = os.path.relpath(os.path.realpath(folder), os.path.realpath(checkout))
    scratch = tempfile.mkdtemp(prefix="podrelease-rev-")
    try:
        archive = git.stream(checkout, "archive", "--format=tar", commit, "--", relative)
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(scratch, filter="tar")  # keeps symlinks as they are (sources may hold absolute ones)
        status, error = git.finish(archive)
        if status != 0:
            raise UserError(relative, None, f"not in revision {commit[:12]}: {error.splitlines()[-1] if error else 'git archive failed'}")
        yield Path(scratch) / relative
    except tarfile.ReadError:
        raise UserError(relative, None, f"not in revision {commit[:12]}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
