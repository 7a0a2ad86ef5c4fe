"""An image's root filesystem as an overlay tree: image path -> where its content comes from.

Rootfs semantics, entry by entry in order:

- `src` is relative to the build file's folder and must stay inside it, even
  through symlinked parents; a symlink named by `src` itself is stored as a
  symlink (unless `src` ends in `/`, which follows it, as POSIX does).
- A directory `src` (with or without a trailing `/`) copies its *contents*
  into the directory `dst`; a file or symlink `src` becomes `dst`, or
  `dst/<basename>` when `dst` ends in `/`. `dst` is a path in the image; `..`
  may not climb above its root.
- Later entries replace earlier files and symlinks; directories merge.
  Replacing a directory by a non-directory (or the reverse), or going through
  a non-directory as a parent, is an error rather than a guess.
- `mode` sets the mode of the entry itself (the file, or the `dst` directory),
  not of what a directory contains; everything else keeps its source mode.
  Implicit parent directories and the image root are 0755; symlinks are 0777.
- Only regular files, directories and symlinks can go into an image.

Every mode in the tree comes from the sources or from these rules, never
from the umask. Pure but for `lstat` and `scandir` of the sources: nothing
is read or written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

from ..core.errors import UserError
from ..core.names import quoted
from ..model.rules import ImageRule, RootfsEntry

ROOT_MODE = 0o755  # the image root (`rootfs` in the tar)
IMPLICIT_DIR_MODE = 0o755  # parents of a `dst` that no entry provides
SYMLINK_MODE = 0o777  # what Linux reports; fixed so other systems agree

Kind = Literal["file", "dir", "symlink"]
Fail = Callable[[str], NoReturn]


@dataclass(frozen=True)
class Node:
    """One path of the image's rootfs and where its content comes from.

    `source` is the absolute path to read (None for implicit directories);
    `origin` says where it came from for people: relative to the build
    file's folder, or under `$ROOTFS` after a command.
    """

    kind: Kind
    mode: int
    source: str | None = None
    linkname: str | None = None
    origin: str | None = None


Tree = dict[str, Node]  # image path without leading '/' -> node



def rootfs_tree(rule: ImageRule, start: Tree | None = None) -> Tree:
    """Apply the rule's rootfs entries, in order, to an empty tree (or a base image's)."""
    folder = os.path.realpath(rule.folder)
    tree: Tree = dict(start or {})
    for entry in rule.rootfs:
        _apply_entry(tree, folder, entry, failer(rule, entry.line))
    return tree


def failer(rule: ImageRule, line: int | None) -> Fail:
    def fail(message: str) -> NoReturn:
        raise UserError(shown(rule), line, message)

    return fail


def shown(rule: ImageRule) -> str:
    """The build file as messages name it (relative to the release root when known)."""
    return rule.shown or str(rule.build_file)


def _apply_entry(tree: Tree, folder: str, entry: RootfsEntry, fail: Fail) -> None:
    source = _resolve_src(folder, entry.src, fail)
    try:
        status = os.lstat(source)
    except FileNotFoundError:
        fail(f"rootfs src {quoted(entry.src)} does not exist")
    except NotADirectoryError:
        fail(f"rootfs src {quoted(entry.src)}: a parent is not a directory")
    dst, into = _dst_parts(entry.dst, fail)
    origin = _origin(folder, source)
    if entry.mode is not None and not 0 <= entry.mode <= 0o7777:
        fail(f"rootfs mode {entry.mode:o} is not a permission mode (0000 to 7777)")
    if stat.S_ISDIR(status.st_mode):
        mode = stat.S_IMODE(status.st_mode) if entry.mode is None else entry.mode
        if dst:
            _place(tree, dst, Node("dir", mode, source, origin=origin), fail)
        elif entry.mode is not None:
            fail(f"rootfs dst {quoted(entry.dst)} is the image root, whose mode is always 0755")
        add_directory(tree, dst, source, origin, fail)
        return
    if entry.src.endswith("/"):
        fail(f"rootfs src {quoted(entry.src)} is not a directory")
    if into or not dst:
        dst = (*dst, os.path.basename(source))
    _place(tree, dst, _node(source, status, entry.mode, origin, fail), fail)


def _resolve_src(folder: str, src: str, fail: Fail) -> str:
    """The real path of `src`, checked to be inside `folder`.

    `..` is resolved by name first (as a reader of the build file would), then
    the parents' symlinks are resolved; the last component is left alone so a
    symlink can be stored as a symlink, except after a trailing `/`.
    """
    joined = os.path.normpath(os.path.join(folder, src))
    if src.endswith("/"):
        resolved = os.path.realpath(joined)
    else:
        head, name = os.path.split(joined)
        resolved = os.path.join(os.path.realpath(head), name)
    if os.path.commonpath([folder, resolved]) != folder:
        fail(f"rootfs src {quoted(src)} is outside the build file's folder")
    return resolved


def _origin(folder: str, source: str) -> str:
    relative = os.path.relpath(source, folder)
    return "" if relative == "." else relative


def _dst_parts(dst: str, fail: Fail) -> tuple[tuple[str, ...], bool]:
    """`dst` as path components below the image root, and whether it means "into"."""
    parts: list[str] = []
    for part in dst.split("/"):
        if part == "..":
            if not parts:
                fail(f"rootfs dst {quoted(dst)} goes above the image root")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return tuple(parts), dst.endswith("/")


def _node(source: str, status: os.stat_result, mode: int | None, origin: str, fail: Fail) -> Node:
    """The node for one source path (lstat'ed, never followed)."""
    if stat.S_ISREG(status.st_mode):
        kind: Kind = "file"
    elif stat.S_ISDIR(status.st_mode):
        kind = "dir"
    elif stat.S_ISLNK(status.st_mode):
        if mode is not None:
            fail(f"rootfs: {origin} is a symlink; a mode does not apply to it")
        return Node("symlink", SYMLINK_MODE, source, os.readlink(source), origin)
    else:
        fail(f"rootfs: {origin} is a {_describe(status.st_mode)}; only files, directories and symlinks can go into an image")
    return Node(kind, stat.S_IMODE(status.st_mode) if mode is None else mode, source, origin=origin)


def _describe(st_mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(st_mode):
            return name
    return "special file"


def _place(tree: Tree, parts: tuple[str, ...], node: Node, fail: Fail) -> None:
    """Put `node` at `parts`, creating implicit parents; a directory merges with a directory."""
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        existing = tree.setdefault(parent, Node("dir", IMPLICIT_DIR_MODE))
        if existing.kind != "dir":
            fail(f"rootfs: /{parent} is a {existing.kind} in the image, not a directory")
    path = "/".join(parts)
    present = tree.get(path)
    if present is not None and (present.kind == "dir") != (node.kind == "dir"):
        fail(f"rootfs: /{path} is a {present.kind} in the image; a {node.kind} cannot replace it")
    tree[path] = node


def add_directory(tree: Tree, parts: tuple[str, ...], directory: str, origin: str, fail: Fail) -> None:
    """Add everything below `directory` at `parts`, without following symlinks."""
    pending = [(parts, directory, origin)]
    while pending:
        parts, directory, origin = pending.pop()
        with os.scandir(directory) as children:
            for child in children:
                child_parts = (*parts, child.name)
                child_origin = f"{origin}/{child.name}" if origin else child.name
                node = _node(child.path, child.stat(follow_symlinks=False), None, child_origin, fail)
                _place(tree, child_parts, node, fail)
                if node.kind == "dir":
                    pending.append((child_parts, child.path, child_origin))
