"""Which release root a doit command works on, found the way doit finds its dodo file.

`RELEASE_ROOT` wins; else doit's working folder: `--dir`, else the dodo
file's folder (`-f`, searched upwards with `-k`), else the current folder.
The task loader and every podrelease command use this one rule.
"""

from __future__ import annotations

import os
from pathlib import Path

from doit.cmd_base import opt_cwd, opt_dodo, opt_seek_file

from ..model.layout import ReleaseRoot

ROOT_OPTIONS = (opt_dodo, opt_cwd, opt_seek_file)


def dodo_folder(dodo_file: str, seek_parent: bool) -> Path | None:
    """The folder of the dodo file, found the way `doit.loader.get_module` finds it."""
    if os.path.isabs(dodo_file):
        return Path(dodo_file).parent if os.path.exists(dodo_file) else None
    if not seek_parent:
        path = os.path.abspath(dodo_file)
        return Path(path).parent if os.path.exists(path) else None
    folder = Path.cwd()
    while True:
        if (folder / dodo_file).exists():
            return (folder / dodo_file).parent
        if folder.parent == folder:
            return None
        folder = folder.parent


def release_root(params: dict) -> ReleaseRoot:
    """`RELEASE_ROOT`, else doit's working folder: `--dir`, else the dodo file's folder, else here.

    doit runs a dodo file in its own folder unless `--dir` says otherwise,
    and `podrelease.tasks` takes that working folder as the release root.
    """
    if params.get("cwdPath"):
        default = Path(os.path.abspath(params["cwdPath"]))
    else:
        default = dodo_folder(params.get("dodoFile") or "dodo.py", bool(params.get("seek_file"))) or Path.cwd()
    return ReleaseRoot.from_environment(default)


def root_problem(root: ReleaseRoot) -> str | None:
    """Why `root` cannot be a release root, or None."""
    if not root.path.is_dir():
        return f"release root {root.path} is not a directory"
    if not any((root.path / name).is_dir() for name in ("shipyard", "channels", "images")):
        return f"{root.path} is not a release root (it has no shipyard/, channels/ or images/)"
    return None
