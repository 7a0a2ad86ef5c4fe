"""Which release root a doit command works on, found the way doit finds its dodo file.

`RELEASE_ROOT` wins; else doit's working folder: `--dir`, else the dodo
file's folder (`-f`, searched upwards with `-k`), else the current folder.
The task loader and every podrelease command use this one rule.

In a subfolder of a release root (`channels/prod/web`, `shipyard/web`)
doit works on that root, as git finds its repository: when the current
folder holds no dodo file and none of `-f`, `-k`, `--dir` or
`RELEASE_ROOT` is given, the nearest folder above that is a release root
(it holds `shipyard/` or `channels/`) is used, through its dodo file. The
search stops at the first release root: a root never reaches into another
that encloses it.
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


MARKERS = ("shipyard", "channels")
DODO_FILE = "dodo.py"


def enclosing_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that is a release root (holds shipyard/ or channels/)."""
    for folder in (start, *start.parents):
        if any((folder / marker).is_dir() for marker in MARKERS):
            return folder
    return None


def chosen_by_user(params: dict) -> bool:
    """Whether the command line or environment already says where the root or dodo file is."""
    return bool(
        os.environ.get("RELEASE_ROOT") or params.get("cwdPath") or params.get("seek_file")
        or (params.get("dodoFile") or DODO_FILE) != DODO_FILE
    )


def seek_release_root(params: dict) -> None:
    """In a subfolder of a release root, point doit at the root's dodo file (see the module doc)."""
    if chosen_by_user(params) or os.path.exists(DODO_FILE):
        return
    found = enclosing_root(Path.cwd())
    if found is not None and found != Path.cwd() and (found / DODO_FILE).is_file():
        params["dodoFile"] = str(found / DODO_FILE)


def release_root(params: dict) -> ReleaseRoot:
    """`RELEASE_ROOT`, else doit's working folder: `--dir`, else the dodo file's folder, else here.

    doit runs a dodo file in its own folder unless `--dir` says otherwise,
    and `podrelease.tasks` takes that working folder as the release root.
    """
    if params.get("cwdPath"):
        default = Path(os.path.abspath(params["cwdPath"]))
    elif not chosen_by_user(params) and not os.path.exists(DODO_FILE):
        default = enclosing_root(Path.cwd()) or Path.cwd()
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
