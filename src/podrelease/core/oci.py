"""OCI image layouts as both sides read and write them: the release (`build.oci`) and the host (`deploy`).

What lives here is what both need and nothing else: the media types and
file names of an image layout, canonical JSON, the bytes of `oci-layout`
and of an `index.json` tagging one manifest, the strict parse of an image
manifest, and `manifest_digest`, the strict check of a whole layout.

Invariants: nothing here writes a file; every refusal is a `ContractError`
of one line naming the file; a manifest is accepted only if it is exactly
what podrelease writes (schemaVersion 2, the manifest media type, a config
descriptor and a non-empty list of gzip or plain tar layer descriptors, each
with a sha256 digest and a size), so a host never fetches a blob a manifest
names by anything but its sha256 digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ContractError
from .hashing import GzipInflater, InflateError

LAYOUT_DIR = "oci"  # inside an image version directory, next to image.aci
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs/sha256"
LAYOUT_VERSION = "1.0.0"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_ID_LABEL = "io.podrelease.image.id"  # the config label that names the ACI an OCI image was made with

DIGEST = re.compile(r"sha256:([0-9a-f]{64})\Z")
MAX_SMALL_BLOB = 4 << 20  # index, manifest and config are read whole; anything bigger is not ours
CHUNK = 1 << 20


def canonical_json(document: dict) -> bytes:
    """Sorted keys, no spaces: the bytes (and so the digests) depend on the content alone."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def layout_bytes() -> bytes:
    """The content of `oci-layout`."""
    return canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def index_bytes(manifest_descriptor: dict, tag: str) -> bytes:
    """The content of an `index.json` whose one manifest is tagged `tag`."""
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**manifest_descriptor, "annotations": {REF_NAME: tag}}],
    }
    return canonical_json(index)


def blob_rel(digest: str) -> str:
    """A blob's path inside a layout: `blobs/sha256/<hex>`."""
    return f"{BLOBS_DIR}/{digest.removeprefix('sha256:')}"


@dataclass(frozen=True)
class Manifest:
    """An image manifest as podrelease writes it: the descriptors of its config and layers."""

    config: dict
    layers: tuple[dict, ...]

    def blobs(self) -> list[dict]:
        """The config and each layer, each once, in that order."""
        seen: dict[str, dict] = {}
        for descriptor in (self.config, *self.layers):
            seen.setdefault(descriptor["digest"], descriptor)
        return list(seen.values())


def parse_manifest(data: bytes, path: Path | str) -> Manifest:
    """Strictly parse the bytes of an image manifest; `path` names it in messages."""
    where = Path(path)
    manifest = _parse(data, where)
    _expect(manifest, where, "schemaVersion", 2)
    _expect(manifest, where, "mediaType", MEDIA_MANIFEST)
    _descriptor(manifest.get("config"), MEDIA_CONFIG, where, "config")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ContractError(f"{where}: layers is not a non-empty list")
    for position, layer in enumerate(layers):
        _descriptor(layer, (MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR), where, f"layer {position}")
    return Manifest(manifest["config"], tuple(layers))


# -- reading a layout back -----------------------------------------------------------


def manifest_digest(directory: Path | str, tag: str, *, check_layers: bool = False) -> str:
    """The digest `sha256:<hex>` of the manifest tagged `tag` in the layout at `directory`.

    The layout is checked strictly: `oci-layout` version, `index.json` with
    exactly one manifest tagged `tag`, the manifest and config blobs present
    with their digests and sizes, one config diff_id per layer, and every
    layer blob present with its size. With `check_layers`, the layers are
    read and hashed too (blob digest, and the diff_id of the uncompressed
    tar). Anything else raises `ContractError`, one line.
    """
    directory = Path(directory)
    layout = _read_json(directory / LAYOUT_FILE, directory)
    if layout.get("imageLayoutVersion") != LAYOUT_VERSION:
        raise ContractError(f"{directory / LAYOUT_FILE}: imageLayoutVersion is not {LAYOUT_VERSION!r}")
    index_path = directory / INDEX_FILE
    index = _read_json(index_path, directory)
    _expect(index, index_path, "schemaVersion", 2)
    if "mediaType" in index:
        _expect(index, index_path, "mediaType", MEDIA_INDEX)
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ContractError(f"{index_path}: manifests is not a list")
    tagged = [
        entry for entry in manifests
        if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict)
        and entry["annotations"].get(REF_NAME) == tag
    ]
    if len(tagged) != 1:
        what = "no manifest" if not tagged else f"{len(tagged)} manifests"
        raise ContractError(f"{index_path}: {what} tagged {tag!r}")
    digest = _descriptor(tagged[0], MEDIA_MANIFEST, index_path, f"manifest {tag!r}")
    manifest_path = _blob_path(directory, digest)
    manifest = _read_blob_json(directory, tagged[0])
    _expect(manifest, manifest_path, "schemaVersion", 2)
    _expect(manifest, manifest_path, "mediaType", MEDIA_MANIFEST)
    config_descriptor = manifest.get("config")
    _descriptor(config_descriptor, MEDIA_CONFIG, manifest_path, "config")
    assert isinstance(config_descriptor, dict)
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ContractError(f"{manifest_path}: layers is not a non-empty list")
    config_path = _blob_path(directory, config_descriptor["digest"])
    config = _read_blob_json(directory, config_descriptor)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if (
        not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(diff_ids, list)
        or len(diff_ids) != len(layers) or not all(isinstance(d, str) and DIGEST.match(d) for d in diff_ids)
    ):
        raise ContractError(f"{config_path}: rootfs is not one sha256 diff_id per layer")
    for position, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        _descriptor(layer, (MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR), manifest_path, f"layer {position}")
        path = _blob_path(directory, layer["digest"])
        _check_size(path, layer["size"])
        if check_layers:
            _check_layer(path, layer, diff_id)
    return digest


def _read_json(path: Path, directory: Path) -> dict:
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_SMALL_BLOB + 1)
    except FileNotFoundError:
        raise ContractError(f"{directory}: no {path.relative_to(directory)}, not an OCI image layout") from None
    except OSError as err:
        raise ContractError(f"{path}: cannot be read: {err.strerror}") from None
    return _parse(data, path)


def _parse(data: bytes, path: Path) -> dict:
    if len(data) > MAX_SMALL_BLOB:
        raise ContractError(f"{path}: larger than {MAX_SMALL_BLOB} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ContractError(f"{path}: not JSON ({err})".replace("\n", " ")) from None
    if not isinstance(document, dict):
        raise ContractError(f"{path}: not a JSON object")
    return document


def _expect(document: dict, path: Path, key: str, value) -> None:
    if document.get(key) != value or type(document.get(key)) is not type(value):
        raise ContractError(f"{path}: {key} is {document.get(key)!r}, expected {value!r}")


def _descriptor(descriptor, media_types, path: Path, what: str) -> str:
    """Check a descriptor's shape; return its digest."""
    if isinstance(media_types, str):
        media_types = (media_types,)
    if not isinstance(descriptor, dict):
        raise ContractError(f"{path}: {what} is not a descriptor")
    if descriptor.get("mediaType") not in media_types:
        raise ContractError(f"{path}: {what} has media type {descriptor.get('mediaType')!r}, expected {media_types[0]!r}")
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ContractError(f"{path}: {what} digest {digest!r} is not sha256:<64 hex>")
    size = descriptor.get("size")
    if type(size) is not int or size < 0:
        raise ContractError(f"{path}: {what} size {size!r} is not a byte count")
    return digest


def _blob_path(directory: Path, digest: str) -> Path:
    return directory / BLOBS_DIR / digest.removeprefix("sha256:")


def _check_size(path: Path, size: int) -> None:
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        raise ContractError(f"{path}: blob is missing") from None
    if not stat.S_ISREG(status.st_mode):
        raise ContractError(f"{path}: blob is not a regular file")
    if status.st_size != size:
        raise ContractError(f"{path}: blob has {status.st_size} bytes, its descriptor says {size}")


def _read_blob_json(directory: Path, descriptor: dict) -> dict:
    """A small blob, checked against its descriptor's size and digest, parsed."""
    path = _blob_path(directory, descriptor["digest"])
    _check_size(path, descriptor["size"])
    if descriptor["size"] > MAX_SMALL_BLOB:
        raise ContractError(f"{path}: larger than {MAX_SMALL_BLOB} bytes")
    data = path.read_bytes()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != descriptor["digest"]:
        raise ContractError(f"{path}: content does not match its digest")
    return _parse(data, path)


def _check_layer(path: Path, layer: dict, diff_id: str) -> None:
    """Hash a layer blob as stored and, inflated if gzip (`hashing.GzipInflater`), as a tar.

    A blob that does not match its digest is reported as such even when it
    no longer inflates: that is the more useful of the two messages.
    """
    stored = hashlib.sha256()
    tar = hashlib.sha256()
    inflater = GzipInflater(tar.update) if layer["mediaType"] == MEDIA_LAYER_GZIP else None
    problem = None
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            stored.update(chunk)
            if inflater is None:
                tar.update(chunk)
            elif problem is None:
                try:
                    inflater.feed(chunk)
                except InflateError as err:
                    problem = f"not gzip ({err})"
    if inflater is not None and problem is None:
        try:
            inflater.close()
        except InflateError as err:
            problem = f"not gzip ({err})"
    if f"sha256:{stored.hexdigest()}" != layer["digest"]:
        raise ContractError(f"{path}: content does not match its digest")
    if problem:
        raise ContractError(f"{path}: {problem}")
    if f"sha256:{tar.hexdigest()}" != diff_id:
        raise ContractError(f"{path}: uncompressed tar does not match its diff_id {diff_id}")
