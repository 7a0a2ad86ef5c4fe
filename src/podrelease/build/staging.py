"""Where an image with a base or a `command` is put together on disk before it is archived.

A base image (`from:`) is unpacked into the building directory and becomes
the tree the rule's entries are laid over; with a `command`, the whole tree
is materialised in a staging root (`$ROOTFS`) that the command may change,
and the tar is made from what it left there. Both live inside the image's
building directory, so a crash leaves them where `fsops.sweep` removes them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

from ..core.errors import ContractError, UserError
from ..core.hashing import HashingReader
from ..core.names import Label, quoted
from ..core.safeopen import open_real
from ..model.layout import IMAGE_SHA512
from ..model.rules import ImageRule
from .archive import CHUNK_SIZE, sort_key
from .rootfs import ROOT_MODE, Fail, Tree, add_directory, failer, shown

COMMAND_UMASK = 0o022
STAGING_NAME = "rootfs"  # the command's $ROOTFS, inside the building directory
BASE_NAME = "base"  # a base image's rootfs, extracted inside the building directory
IMAGE_FILE = "image.aci"
SHA512_FILE = IMAGE_SHA512


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



def extract_base(rule: ImageRule, base: Path, destination: Path) -> Tree:
    """Unpack a built base image's rootfs into `destination`, as a tree to lay entries over.

    The base is one of our own artifacts, so modes (setuid included) are kept
    exactly; still, its digest is re-checked while reading and only plain
    files, directories and symlinks strictly below `rootfs/` are accepted.
    """
    fail = failer(rule, rule.line)
    expected = (base / SHA512_FILE).read_text(encoding="ascii").strip()
    os.mkdir(destination, 0o700)
    directories: list[tuple[str, int]] = []
    with open(base / IMAGE_FILE, "rb") as compressed, gzip.GzipFile(fileobj=compressed) as raw:
        reader = HashingReader(raw)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]  # a stream needs only read()
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
    add_directory(tree, (), os.path.realpath(destination), f"{rule.base}@{rule.base_version}:", fail)
    return tree


def _base_member_path(name: str, fail: Fail) -> str | None:
    """The path below `rootfs/` of a base image member; None for the manifest and the root."""
    if name in ("manifest", STAGING_NAME):
        return None
    parts = name.split("/")
    if parts[0] != STAGING_NAME or any(p in ("", ".", "..") for p in parts[1:]):
        fail(f"base image member {quoted(name)} is not below rootfs/")
    return "/".join(parts[1:])


def _write_member(source, target: str, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(target, flags, 0o600), "wb", buffering=0) as writer:
        while chunk := source.read(CHUNK_SIZE):
            writer.write(chunk)
        os.fchmod(writer.fileno(), mode)



def materialise(tree: Tree, staging: Path) -> dict[str, str]:
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
        elif node.kind == "file" and node.source is not None:
            digests[path] = _copy_file(node.source, target, node.mode)
        elif node.kind == "symlink" and node.linkname is not None:
            os.symlink(node.linkname, target)
    for target, mode in reversed(directories):
        os.chmod(target, mode)
    os.chmod(staging, ROOT_MODE)
    return digests


def _copy_file(source: str, target: str, mode: int) -> str:
    """Copy in chunks with an exact mode (not the umask's); return the sha256 of what was copied."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(CHUNK_SIZE))
    # Opened from / without following a link anywhere: `source` is the real path planned from
    # the build folder, so a link on it now is a directory swapped since (see core.safeopen).
    try:
        fd = open_real(source)
    except ContractError as e:
        raise ContractError(f"{e}: it changed since the rootfs was planned") from None
    with open(fd, "rb", buffering=0) as reader:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(target, flags, 0o600), "wb", buffering=0) as writer:
            while count := reader.readinto(buffer):
                digest.update(buffer[:count])
                writer.write(buffer[:count])
            os.fchmod(writer.fileno(), mode)
    return digest.hexdigest()


def run_command(rule: ImageRule, version: str, staging: Path, env: Mapping[str, str] | None) -> None:
    """Run the rule's command in its folder with `ROOTFS` set; raise ImageBuildError if it fails."""
    assert rule.command is not None  # only rules with a command are staged
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
            shown(rule), rule.command_line or rule.line, f"image {rule.label} {version}: cannot run {quoted(rule.command[0])}: {exc.strerror}"
        ) from None
    if result.returncode != 0:
        output = result.stdout.decode("utf-8", "replace")
        raise ImageBuildError(rule.label, version, result.returncode, output, shown(rule), rule.command_line or rule.line)


def staged_tree(rule: ImageRule, version: str, staging: Path) -> Tree:
    """What the command left in the staging root.

    The root itself must still be a real directory: walking a `$ROOTFS` the
    command replaced by a symlink would archive whatever it points to.
    """
    fail = failer(rule, rule.line)
    if staging.is_symlink() or not staging.is_dir():
        fail(f"image {rule.label} {version}: the command removed or replaced $ROOTFS; it may only change what is inside")
    built: Tree = {}
    add_directory(built, (), os.path.realpath(staging), "$ROOTFS", fail)
    return built


def remove_tree(root: Path) -> None:
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
