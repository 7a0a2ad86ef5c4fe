"""Build one image: rootfs entries (+ an optional command) -> `image.aci`.

The rootfs is first described as an overlay tree: image path -> where the
content comes from. Without a `command` that tree is streamed straight from
the sources into the tar, so nothing is copied. With a `command` it is
materialised in a staging root the command may change, and the tar is made
from what the command left there.

What goes into the rootfs, and how, is `rootfs`'s business; a base image
and a command are put together in `staging`. Every mode in the tar comes
from the sources or from those rules, never from the umask, so the sha512 is
the same for anyone building the same inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from ..core import fsops, progress
from ..core.errors import UserError
from ..core.hashing import HashingWriter
from ..model.rules import ImageRule
from . import oci, staging
from .archive import Entry, ParallelGzipWriter, sort_key, write_tar
from .rootfs import ROOT_MODE, Node, Tree, rootfs_tree, shown
from .staging import BASE_NAME, IMAGE_FILE, SHA512_FILE, STAGING_NAME, ImageBuildError

__all__ = ["ImageBuildError", "build_image", "build_record", "image_manifest", "manifest_bytes", "read_manifest"]

AC_VERSION = "0.8.11"
MANIFEST_MODE = 0o644
BUILD_RECORD_FILE = "build.json"
# The OCI layer is the plain tar: the same rootfs is already gzip'd once in image.aci, and
# a second deflate would double the build's CPU and memory for bytes every runtime accepts
# uncompressed (podman, skopeo, umoci); its digest is then also its diff_id.
LAYER_COMPRESSION = oci.UNCOMPRESSED
# Everything an image version directory holds.
IMAGE_ENTRIES = (IMAGE_FILE, SHA512_FILE, BUILD_RECORD_FILE, oci.LAYOUT_DIR)

Kind = Literal["file", "dir", "symlink"]
Fail = Callable[[str], NoReturn]


def image_manifest(rule: ImageRule, version: str) -> dict:
    """The appc ImageManifest of `rule` at `version`."""
    manifest: dict = {
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
    if fsops.in_the_way(image_dir):
        # callers build only when there is no sha512: whatever is there is not a whole image
        raise UserError(
            _shown_image_dir(rule, version, image_dir), None,
            f"is in the way of image {rule.label} {version}: it has no {SHA512_FILE}, "
            "so doit did not make it; move it away and run doit again",
        )
    if not oci.REF.match(version):
        raise UserError(shown(rule), rule.line, f"image {rule.label}: version {version!r} cannot tag an OCI image "
                        "(letters and digits, single '.', '_', '-' or '+' between them)")
    manifest = manifest_bytes(image_manifest(rule, version))
    tree = rootfs_tree(rule)
    aci_hash = hashlib.sha512()  # of image.aci as stored: lets `doit verify` see any changed byte
    with fsops.building_dir(image_dir) as tmp:
        extracted = tmp / BASE_NAME
        fsops.make_dirs(tmp / oci.LAYOUT_DIR)
        # the rootfs again, as the OCI image's layer; uncompressed, as `LAYER_COMPRESSION` says why
        with oci.LayerSink(tmp / oci.LAYOUT_DIR, LAYER_COMPRESSION) as layer:
            outputs = _Outputs(aci_hash, layer, f"image {rule.label} {version}")
            try:
                whole = rootfs_tree(rule, staging.extract_base(rule, base, extracted)) if base else tree
                if rule.command:
                    sha512, digests = _build_with_command(rule, version, whole, manifest, tmp, env, outputs)
                else:
                    sha512, digests = _build_from_sources(whole, manifest, tmp, outputs)
            finally:
                staging.remove_tree(extracted)
            config = oci.OciConfig.from_app(rule.app, os=rule.os, arch=rule.arch, image_id=f"sha512-{sha512}")
            oci_digest = oci.write_layout(tmp / oci.LAYOUT_DIR, layer, config, version)
        fsops.write_file(tmp / SHA512_FILE, f"{sha512}\n".encode())
        record = build_record(rule, version, sha512, tree, digests, aci_hash.hexdigest())
        record["oci"] = oci_digest
        if source:
            record["source"] = source
        fsops.write_file(tmp / BUILD_RECORD_FILE, json.dumps(record, sort_keys=True, indent=2).encode() + b"\n")
    return sha512


def _shown_image_dir(rule: ImageRule, version: str, image_dir: Path) -> str:
    """`images/<label_path>/<image>/<version>/` as a release root shows it (else the path as given)."""
    shown = f"images/{rule.label.join(version)}"
    return f"{shown}/" if image_dir.as_posix().endswith(f"/{shown}") else f"{image_dir}/"


@dataclass(frozen=True)
class _Outputs:
    """Where the one pass over the rootfs goes besides the ACI's tar."""

    aci_hash: Any  # a hashlib object fed image.aci as stored
    layer: oci.LayerSink  # the OCI layer: the same rootfs, without the `rootfs/` prefix
    description: str = "image"  # what a progress bar on a terminal calls it


def _build_from_sources(tree: Tree, manifest: bytes, tmp: Path, outputs: _Outputs) -> tuple[str, dict[str, str]]:
    """Stream the overlay tree from its sources; no copy is ever made."""
    tar_digests: dict[str, str] = {}
    sha512 = _write_aci(tmp / IMAGE_FILE, _tar_entries(manifest, tree), tar_digests, outputs)
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
    outputs: _Outputs,
) -> tuple[str, dict[str, str]]:
    """Copy the tree into a staging root, let the command change it, tar the result."""
    root = tmp / STAGING_NAME
    try:
        digests = staging.materialise(tree, root)
        staging.run_command(rule, version, root, env)
        built = staging.staged_tree(rule, version, root)
        sha512 = _write_aci(tmp / IMAGE_FILE, _tar_entries(manifest, built), None, outputs)
    finally:
        staging.remove_tree(root)
    return sha512, digests


def read_manifest(image_dir: Path) -> dict:
    """A built image's manifest: the first member of its tar, so only a few KiB are read."""
    with gzip.open(image_dir / IMAGE_FILE) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        member = tar.next()
        if member is None or member.name != "manifest" or not member.isfile():
            raise UserError(str(image_dir / IMAGE_FILE), None, "image has no manifest first; run doit verify")
        data = tar.extractfile(member)
        assert data is not None  # a regular file member
        return json.load(data)



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


def _write_aci(path: Path, entries: Iterable[Entry], file_digests: dict[str, str] | None, outputs: _Outputs) -> str:
    """Write the gzip-compressed ACI (mode 0644 whatever the umask) and the OCI layer; return the tar's sha512.

    `outputs.aci_hash` is fed the compressed bytes as they are written.
    """
    entries = list(entries)
    total = _total_bytes(entries) if progress.on_terminal() else None  # a stat per file only for a person watching
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, fsops.ARTIFACT_FILE_MODE)
    with open(fd, "wb") as out, progress.Progress(outputs.description, total, len(entries)) as shown:
        os.fchmod(fd, fsops.ARTIFACT_FILE_MODE)
        with ParallelGzipWriter(HashingWriter(out, outputs.aci_hash)) as gzip:
            return write_tar(shown.each_file(entries), shown.counting(gzip), file_digests, subtree=(outputs.layer, STAGING_NAME))


def _total_bytes(entries: list[Entry]) -> int:
    """About the tar's size: each file's content (headers and padding are small beside a long build)."""
    total = 0
    for entry in entries:
        if entry.data is not None:
            total += len(entry.data)
        elif entry.source is not None:
            try:
                total += os.stat(entry.source).st_size
            except OSError:
                pass  # write_tar reports it
    return total


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
