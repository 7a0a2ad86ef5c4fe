"""Build one image: rootfs entries (+ an optional command) -> `image.aci`.

The rootfs is first described as an overlay tree: image path -> where the
content comes from. Without a `command` that tree is streamed straight from
the sources into the tar, so nothing is copied. With a `command` it is
materialised in a staging root the command may change, and the tar is made
from what the command left there.

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

Every mode in the tar comes from the sources or from these rules, never from
the umask, so the sha512 is the same for anyone building the same inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, NoReturn

from ..core import fsops as atomic
from .archive import CHUNK_SIZE, Entry, ParallelGzipWriter, sort_key, write_tar
from ..core.errors import UserError
from ..core.hashing import HashingReader, HashingWriter
from ..core.names import Label
from ..model.rules import ImageRule, RootfsEntry

AC_VERSION = "0.8.11"
ROOT_MODE = 0o755  # the image root (`rootfs` in the tar)
IMPLICIT_DIR_MODE = 0o755  # parents of a `dst` that no entry provides
SYMLINK_MODE = 0o777  # what Linux reports; fixed so other systems agree
MANIFEST_MODE = 0o644
COMMAND_UMASK = 0o022
STAGING_NAME = "rootfs"  # the command's $ROOTFS, inside the building directory
BASE_NAME = "base"  # a base image's rootfs, extracted inside the building directory

IMAGE_FILE = "image.aci"
SHA512_FILE = "sha512"
BUILD_RECORD_FILE = "build.json"

Kind = Literal["file", "dir", "symlink"]
Fail = Callable[[str], NoReturn]


class ImageBuildError(UserError):
    """An image's `command` failed; `output` holds what it printed (stdout and stderr).

    A UserError, because the fix is in the user's build rule or sources: it
    prints as one `path:line:` line, and the caller may show `output` below.
    """

    def __init__(
        self,
        label: Label,
        version: str,
        returncode: int,
        output: str,
        path: str | None = None,
        line: int | None = None,
    ):
        if returncode < 0:
            what = f"command was killed by signal {-returncode}"
        else:
            what = f"command exited with status {returncode}"
        super().__init__(path, line, f"image {label} {version}: {what}")
        self.label = label
        self.version = version
        self.returncode = returncode
        self.output = output


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


def image_manifest(rule: ImageRule, version: str) -> dict:
    """The appc ImageManifest of `rule` at `version`."""
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": AC_VERSION,
        "name": rule.name,
        "labels": [
            {"name": "version", "value": version},
            {"name": "os", "value": rule.os},
            {"name": "arch", "value": rule.arch},
        ],
    }
    if rule.app is not None:
        manifest["app"] = rule.app.to_appc()
    return manifest


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical JSON: the manifest is inside the tar, so its bytes are part of the image id."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def build_image(
    rule: ImageRule,
    version: str,
    image_dir: Path,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
    source: dict | None = None,
) -> str:
    """Build `image_dir` (image.aci, sha512, build.json) atomically; return the sha512 hex.

    `env` is the command's environment (default: ours), plus `ROOTFS`.
    `base` is the built image directory of the rule's `from:`, whose rootfs
    the rule's entries are laid over. `source` (which revision the rule and
    its files came from) is recorded in build.json as it is. The rootfs is checked before anything
    is written, so a mistake in the rule leaves no trace.
    """
    if atomic.in_the_way(image_dir):
        # callers build only when there is no sha512: whatever is there is not a whole image
        raise UserError(
            _shown_image_dir(rule, version, image_dir), None,
            f"is in the way of image {rule.label} {version}: it has no {SHA512_FILE}, "
            "so doit did not make it; move it away and run doit again",
        )
    manifest = manifest_bytes(image_manifest(rule, version))
    tree = rootfs_tree(rule)
    aci_hash = hashlib.sha512()  # of image.aci as stored: lets `doit verify` see any changed byte
    with atomic.building_dir(image_dir) as tmp:
        extracted = tmp / BASE_NAME
        try:
            whole = rootfs_tree(rule, _extract_base(rule, base, extracted)) if base else tree
            if rule.command:
                sha512, digests = _build_with_command(rule, version, whole, manifest, tmp, env, aci_hash)
            else:
                sha512, digests = _build_from_sources(whole, manifest, tmp, aci_hash)
        finally:
            _remove_tree(extracted)
        atomic.write_file(tmp / SHA512_FILE, f"{sha512}\n".encode())
        record = build_record(rule, version, sha512, tree, digests, aci_hash.hexdigest())
        if source:
            record["source"] = source
        atomic.write_file(tmp / BUILD_RECORD_FILE, json.dumps(record, sort_keys=True, indent=2).encode() + b"\n")
    return sha512


def _shown_image_dir(rule: ImageRule, version: str, image_dir: Path) -> str:
    """`images/<label_path>/<image>/<version>/` as a release root shows it (else the path as given)."""
    shown = f"images/{rule.label.join(version)}"
    return f"{shown}/" if image_dir.as_posix().endswith(f"/{shown}") else f"{image_dir}/"


def _build_from_sources(tree: Tree, manifest: bytes, tmp: Path, aci_hash=None) -> tuple[str, dict[str, str]]:
    """Stream the overlay tree from its sources; no copy is ever made."""
    tar_digests: dict[str, str] = {}
    sha512 = _write_aci(tmp / IMAGE_FILE, _tar_entries(manifest, tree), tar_digests, aci_hash)
    prefix = f"{STAGING_NAME}/"
    digests = {name.removeprefix(prefix): digest for name, digest in tar_digests.items() if name.startswith(prefix)}
    return sha512, digests


def _build_with_command(
    rule: ImageRule,
    version: str,
    tree: Tree,
    manifest: bytes,
    tmp: Path,
    env: Mapping[str, str] | None,
    aci_hash=None,
) -> tuple[str, dict[str, str]]:
    """Copy the tree into a staging root, let the command change it, tar the result."""
    staging = tmp / STAGING_NAME
    try:
        digests = _materialise(tree, staging)
        _run_command(rule, version, staging, env)
        built = _staged_tree(rule, version, staging)
        sha512 = _write_aci(tmp / IMAGE_FILE, _tar_entries(manifest, built), None, aci_hash)
    finally:
        _remove_tree(staging)
    return sha512, digests


# -- the overlay tree ---------------------------------------------------------


def rootfs_tree(rule: ImageRule, start: Tree | None = None) -> Tree:
    """Apply the rule's rootfs entries, in order, to an empty tree (or a base image's)."""
    folder = os.path.realpath(rule.folder)
    tree: Tree = dict(start or {})
    for entry in rule.rootfs:
        _apply_entry(tree, folder, entry, _failer(rule, entry.line))
    return tree


def _failer(rule: ImageRule, line: int | None) -> Fail:
    def fail(message: str) -> NoReturn:
        raise UserError(_shown(rule), line, message)

    return fail


def _shown(rule: ImageRule) -> str:
    """The build file as messages name it (relative to the release root when known)."""
    return rule.shown or str(rule.build_file)


def _apply_entry(tree: Tree, folder: str, entry: RootfsEntry, fail: Fail) -> None:
    source = _resolve_src(folder, entry.src, fail)
    try:
        status = os.lstat(source)
    except FileNotFoundError:
        fail(f"rootfs src {entry.src!r} does not exist")
    except NotADirectoryError:
        fail(f"rootfs src {entry.src!r}: a parent is not a directory")
    dst, into = _dst_parts(entry.dst, fail)
    origin = _origin(folder, source)
    if entry.mode is not None and not 0 <= entry.mode <= 0o7777:
        fail(f"rootfs mode {entry.mode:o} is not a permission mode (0000 to 7777)")
    if stat.S_ISDIR(status.st_mode):
        mode = stat.S_IMODE(status.st_mode) if entry.mode is None else entry.mode
        if dst:
            _place(tree, dst, Node("dir", mode, source, origin=origin), fail)
        elif entry.mode is not None:
            fail(f"rootfs dst {entry.dst!r} is the image root, whose mode is always 0755")
        _add_directory(tree, dst, source, origin, fail)
        return
    if entry.src.endswith("/"):
        fail(f"rootfs src {entry.src!r} is not a directory")
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
        fail(f"rootfs src {src!r} is outside the build file's folder")
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
                fail(f"rootfs dst {dst!r} goes above the image root")
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
    existing = tree.get(path)
    if existing is not None and (existing.kind == "dir") != (node.kind == "dir"):
        fail(f"rootfs: /{path} is a {existing.kind} in the image; a {node.kind} cannot replace it")
    tree[path] = node


def _add_directory(tree: Tree, parts: tuple[str, ...], directory: str, origin: str, fail: Fail) -> None:
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


def read_manifest(image_dir: Path) -> dict:
    """A built image's manifest: the first member of its tar, so only a few KiB are read."""
    with gzip.open(image_dir / IMAGE_FILE) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        member = tar.next()
        if member is None or member.name != "manifest" or not member.isfile():
            raise UserError(str(image_dir / IMAGE_FILE), None, "image has no manifest first; run doit verify")
        return json.load(tar.extractfile(member))


# -- base images ---------------------------------------------------------------


def _extract_base(rule: ImageRule, base: Path, destination: Path) -> Tree:
    """Unpack a built base image's rootfs into `destination`, as a tree to lay entries over.

    The base is one of our own artifacts, so modes (setuid included) are kept
    exactly; still, its digest is re-checked while reading and only plain
    files, directories and symlinks strictly below `rootfs/` are accepted.
    """
    fail = _failer(rule, rule.line)
    expected = (base / SHA512_FILE).read_text(encoding="ascii").strip()
    os.mkdir(destination, 0o700)
    directories: list[tuple[str, int]] = []
    with open(base / IMAGE_FILE, "rb") as compressed, gzip.GzipFile(fileobj=compressed) as raw:
        reader = HashingReader(raw)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                path = _base_member_path(member.name, fail)
                if path is None:
                    continue
                target = os.path.join(destination, path)
                if member.isdir():
                    os.mkdir(target, 0o700)
                    directories.append((target, member.mode))
                elif member.isfile():
                    _write_member(tar.extractfile(member), target, member.mode)
                elif member.issym():
                    os.symlink(member.linkname, target)
                else:
                    fail(f"base image {rule.base}@{rule.base_version}: {member.name} is not a file, directory or symlink")
        reader.drain()
    if reader.digest.hexdigest() != expected:
        fail(f"base image {rule.base}@{rule.base_version} does not match its sha512; run doit verify")
    for target, mode in reversed(directories):
        os.chmod(target, mode)
    tree: Tree = {}
    _add_directory(tree, (), str(destination), f"{rule.base}@{rule.base_version}:", fail)
    return tree


def _base_member_path(name: str, fail: Fail) -> str | None:
    """The path below `rootfs/` of a base image member; None for the manifest and the root."""
    if name in ("manifest", STAGING_NAME):
        return None
    parts = name.split("/")
    if parts[0] != STAGING_NAME or any(p in ("", ".", "..") for p in parts[1:]):
        fail(f"base image member {name!r} is not below rootfs/")
    return "/".join(parts[1:])


def _write_member(source, target: str, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(target, flags, 0o600), "wb", buffering=0) as writer:
        while chunk := source.read(CHUNK_SIZE):
            writer.write(chunk)
        os.fchmod(writer.fileno(), mode)


# -- staging and command ------------------------------------------------------


def _materialise(tree: Tree, staging: Path) -> dict[str, str]:
    """Create `tree` under `staging` with exact modes; return each file's sha256.

    Directories are created owner-writable and get their real mode last, so
    a read-only directory can still be filled.
    """
    os.mkdir(staging, 0o700)
    digests: dict[str, str] = {}
    directories: list[tuple[str, int]] = []
    for path in sorted(tree, key=sort_key):  # parents sort before their children
        node = tree[path]
        target = os.path.join(staging, path)
        if node.kind == "dir":
            os.mkdir(target, 0o700)
            directories.append((target, node.mode))
        elif node.kind == "file":
            digests[path] = _copy_file(node.source, target, node.mode)
        else:
            os.symlink(node.linkname, target)
    for target, mode in reversed(directories):
        os.chmod(target, mode)
    os.chmod(staging, ROOT_MODE)
    return digests


def _copy_file(source: str, target: str, mode: int) -> str:
    """Copy in chunks with an exact mode (not the umask's); return the sha256 of what was copied."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(CHUNK_SIZE))
    with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb", buffering=0) as reader:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(target, flags, 0o600), "wb", buffering=0) as writer:
            while count := reader.readinto(buffer):
                digest.update(buffer[:count])
                writer.write(buffer[:count])
            os.fchmod(writer.fileno(), mode)
    return digest.hexdigest()


def _run_command(rule: ImageRule, version: str, staging: Path, env: Mapping[str, str] | None) -> None:
    """Run the rule's command in its folder with `ROOTFS` set; raise ImageBuildError if it fails."""
    environment = dict(os.environ if env is None else env)
    environment["ROOTFS"] = str(staging)
    try:
        result = subprocess.run(
            list(rule.command),
            cwd=rule.folder,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            umask=COMMAND_UMASK,
        )
    except OSError as exc:
        raise UserError(
            _shown(rule), rule.line, f"image {rule.label} {version}: cannot run {rule.command[0]!r}: {exc.strerror}"
        ) from None
    if result.returncode != 0:
        output = result.stdout.decode("utf-8", "replace")
        raise ImageBuildError(rule.label, version, result.returncode, output, _shown(rule), rule.line)


def _staged_tree(rule: ImageRule, version: str, staging: Path) -> Tree:
    """What the command left in the staging root.

    The root itself must still be a real directory: walking a `$ROOTFS` the
    command replaced by a symlink would archive whatever it points to.
    """
    fail = _failer(rule, rule.line)
    if staging.is_symlink() or not staging.is_dir():
        fail(f"image {rule.label} {version}: the command removed or replaced $ROOTFS; it may only change what is inside")
    built: Tree = {}
    _add_directory(built, (), str(staging), "$ROOTFS", fail)
    return built


def _remove_tree(root: Path) -> None:
    """Remove a staging root even if the command left directories read-only.

    Directories are made owner-accessible before they are listed; symlinks
    are skipped so nothing outside the staging root is ever touched.
    """
    if not root.is_dir() or root.is_symlink():
        return
    os.chmod(root, 0o700)
    for directory, subdirectories, _files in os.walk(root):
        for name in subdirectories:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(root)


# -- the ACI --------------------------------------------------------------------


def _tar_entries(manifest: bytes, tree: Tree) -> list[Entry]:
    """`manifest`, `rootfs` and the tree below it, sorted by full name."""
    entries = [
        Entry("manifest", "file", MANIFEST_MODE, data=manifest),
        Entry(STAGING_NAME, "dir", ROOT_MODE),
    ]
    for path, node in tree.items():
        source = node.source if node.kind == "file" else None
        entries.append(Entry(f"{STAGING_NAME}/{path}", node.kind, node.mode, source=source, linkname=node.linkname))
    entries.sort(key=lambda entry: sort_key(entry.name))
    return entries


def _write_aci(path: Path, entries: Iterable[Entry], file_digests: dict[str, str] | None, aci_hash=None) -> str:
    """Write the gzip-compressed ACI (mode 0644 whatever the umask); return the tar's sha512.

    `aci_hash` (a hashlib object), if given, is fed the compressed bytes as they are written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, atomic.ARTIFACT_FILE_MODE)
    with open(fd, "wb") as out:
        os.fchmod(fd, atomic.ARTIFACT_FILE_MODE)
        sink = out if aci_hash is None else HashingWriter(out, aci_hash)
        with ParallelGzipWriter(sink) as gzip:
            return write_tar(entries, gzip, file_digests)


# -- build.json ---------------------------------------------------------------


def build_record(
    rule: ImageRule,
    version: str,
    sha512: str,
    tree: Tree,
    digests: Mapping[str, str],
    aci_sha512: str | None = None,
) -> dict:
    """What the image was built from, so a changed rule under an old version can be noticed.

    `inputs` holds only what determines the image (no absolute paths, no
    line numbers), so its digest is comparable across machines and checkouts.
    `aci_sha512` is the sha512 of `image.aci` as stored (the id only covers
    the uncompressed tar, not the gzip wrapper around it).
    """
    inputs = {"rule": _rule_fields(rule), "rootfs": [_input_of(path, tree[path], digests) for path in sorted(tree, key=sort_key)]}
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    record = {
        "label": str(rule.label),
        "version": version,
        "id": f"sha512-{sha512}",
        "inputs_digest": f"sha256-{hashlib.sha256(canonical).hexdigest()}",
        "inputs": inputs,
    }
    if aci_sha512 is not None:
        record["aci_sha512"] = aci_sha512
    return record


def _rule_fields(rule: ImageRule) -> dict:
    base = {"from": f"{rule.base}@{rule.base_version}"} if rule.base else {}
    return base | {
        "name": rule.name,
        "rootfs": [{"src": e.src, "dst": e.dst, "mode": None if e.mode is None else f"{e.mode:04o}"} for e in rule.rootfs],
        "command": None if rule.command is None else list(rule.command),
        "app": None if rule.app is None else rule.app.to_appc(),
        "os": rule.os,
        "arch": rule.arch,
    }


def _input_of(path: str, node: Node, digests: Mapping[str, str]) -> dict:
    item = {"path": f"/{path}", "type": node.kind, "mode": f"{node.mode:04o}", "source": node.origin}
    if node.kind == "file":
        item["sha256"] = digests[path]
    elif node.kind == "symlink":
        item["linkname"] = node.linkname
    return item
