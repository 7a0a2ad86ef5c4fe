"""An image's OCI image layout (`oci/` next to `image.aci`), image-spec 1.1.

The layout holds exactly one image manifest, tagged with the image's version
(`org.opencontainers.image.ref.name` in `index.json`), whose single layer is
the image's root filesystem: the entries of the ACI's `rootfs/`, without that
prefix, as the same deterministic tar (`archive.write_tar`: same modes and
symlinks, mtime 0, uid/gid 0, no user or group names, sorted names).

Invariants:

- Deterministic bytes. Every blob depends on nothing but the rootfs entries,
  the `OciConfig` and the version: JSON is canonical (sorted keys, no
  spaces), nothing records a time (no `created`, no `history`), and the
  layer is compressed by `ParallelGzipWriter`, whose bytes do not depend on
  the number of cores. File modes are 0644 and directories 0755 whatever
  the umask. The same inputs give the same manifest digest on any machine.
- Hashes as it streams. The image builder writes the layer tar into a
  `LayerSink` in the same pass as the ACI; the sink hashes the uncompressed
  tar (the config's `diff_id`) and the stored blob on the fly and never
  holds the layer in memory.
- Atomicity. A blob is written under a temporary dot name in
  `blobs/sha256/` and renamed to its digest only when whole, so a blob's
  name always matches its content; `oci-layout` and then `index.json` are
  renamed into place last, so a reader that finds `index.json` finds every
  blob it names. In a release the layout is built inside the image version's
  building directory (`fsops.building_dir`), so it appears together with
  `image.aci` or not at all; temporaries of a dead process are removed by
  `fsops.sweep` like any other.

Base images (`from:`) need nothing here: the builder flattens the base's
rootfs and the rule's entries into one rootfs before writing the tar, so the
layout never reuses a base image's layer and one layer is always enough.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ..core import fsops
from ..core.errors import ContractError
from ..core.hashing import GzipInflater, InflateError
from . import archive

if TYPE_CHECKING:
    from ..model.rules import App

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
IMAGE_ID_LABEL = "io.podrelease.image.id"

IMAGE_ID = re.compile(r"sha512-[0-9a-f]{128}\Z")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})\Z")
# image-spec `ref.name` grammar: components of alphanumerics joined by one of -._:@+ or "--", split by '/'
REF = re.compile(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*\Z")
PORT = re.compile(r"[1-9][0-9]{0,4}/(tcp|udp|sctp)\Z")
MAX_SMALL_BLOB = 4 << 20  # index, manifest and config are read whole; anything bigger is not ours
CHUNK = archive.CHUNK_SIZE

# appc arch (https://github.com/appc/spec/blob/master/spec/types.md#os-arch) -> OCI (GOARCH, variant);
# big-endian ARM (aarch64_be, armv7b) has no OCI name.
_APPC_ARCH = {
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "aarch64": ("arm64", None),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "ppc64": ("ppc64", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def canonical_json(document: dict) -> bytes:
    """Sorted keys, no spaces: the bytes (and so the digests) depend on the content alone."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def oci_platform(appc_arch: str) -> tuple[str, str | None]:
    """The OCI `(architecture, variant)` of an appc arch name; ValueError if OCI has none."""
    try:
        return _APPC_ARCH[appc_arch]
    except KeyError:
        raise ValueError(f"appc arch {appc_arch!r} has no OCI architecture") from None


# -- the image config -----------------------------------------------------------


@dataclass(frozen=True)
class OciConfig:
    """What goes into the image config besides the layer's diff_id.

    `user` is the OCI `User`, `"user:group"`: always written, `"0:0"`
    included, because appc requires both and an explicit root is the same
    thing a runtime assumes for a missing `User`, only visible. `env` keeps
    its order (the appc environment's). `exposed_ports` are `"<port>/<proto>"`.
    `labels` must carry `io.podrelease.image.id` (the ACI's `sha512-<hex>`),
    which ties the OCI image to the ACI it was built with.
    """

    architecture: str
    os: str
    labels: tuple[tuple[str, str], ...]
    variant: str | None = None
    entrypoint: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str = "0:0"
    working_dir: str | None = None
    exposed_ports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.architecture or not self.os:
            raise ValueError("an OCI config needs an architecture and an os")
        names = [name for name, _ in self.labels]
        if len(set(names)) != len(names):
            raise ValueError("OCI config labels are duplicated")
        image_id = dict(self.labels).get(IMAGE_ID_LABEL)
        if not isinstance(image_id, str) or not IMAGE_ID.match(image_id):
            raise ValueError(f"OCI config label {IMAGE_ID_LABEL} must be sha512-<128 hex>, not {image_id!r}")
        env_names = [name for name, _ in self.env]
        if any(not name or "=" in name for name in env_names) or len(set(env_names)) != len(env_names):
            raise ValueError("OCI config env names must be non-empty, distinct and free of '='")
        for port in self.exposed_ports:
            if not PORT.match(port) or int(port.split("/")[0]) > 65535:
                raise ValueError(f"OCI exposed port {port!r} is not <port>/<tcp|udp|sctp>")
        if not self.user:
            raise ValueError("OCI config user must not be empty")

    @classmethod
    def from_app(
        cls,
        app: App | None,
        *,
        os: str,
        arch: str,
        image_id: str,
        labels: tuple[tuple[str, str], ...] = (),
    ) -> OciConfig:
        """The config of an image whose appc manifest has `app`, `os`, `arch` and id `image_id`.

        appc `exec` becomes `Entrypoint` (run arguments are appended, as
        rkt appends them to exec); ports expand `count` into one entry
        each. A user or group given as a path means the owner of that file
        in the rootfs, which is always 0 (every tar entry is uid/gid 0).
        Mount points are not written as `Volumes`: a runtime would create
        anonymous volumes there, while a pod mounts its own versioned ones.
        """
        architecture, variant = oci_platform(arch)
        all_labels = ((IMAGE_ID_LABEL, image_id), *labels)
        if app is None:
            return cls(architecture, os, all_labels, variant)
        ports = sorted(
            {f"{port.port + i}/{port.protocol}" for port in app.ports for i in range(port.count)}
        )
        return cls(
            architecture=architecture,
            os=os,
            labels=all_labels,
            variant=variant,
            entrypoint=tuple(app.exec),
            env=tuple(app.environment),
            user=f"{_appc_id(app.user)}:{_appc_id(app.group)}",
            working_dir=app.working_directory,
            exposed_ports=tuple(ports),
        )

    def to_json(self, diff_ids: list[str]) -> dict:
        """The image config document (image-spec config.md); empty settings are left out."""
        settings: dict = {"Labels": dict(self.labels)}
        if self.entrypoint:
            settings["Entrypoint"] = list(self.entrypoint)
        if self.env:
            settings["Env"] = [f"{name}={value}" for name, value in self.env]
        settings["User"] = self.user
        if self.working_dir:
            settings["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            settings["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        document = {
            "architecture": self.architecture,
            "os": self.os,
            "config": settings,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }
        if self.variant:
            document["variant"] = self.variant
        return document


def _appc_id(name: str) -> str:
    return "0" if name.startswith("/") else name


# -- the layer --------------------------------------------------------------------


class Compressor(Protocol):
    """A write-only stream that compresses into the file it was opened on."""

    def write(self, data: bytes | memoryview) -> int: ...
    def close(self) -> None: ...  # finish the stream; leave the output open
    def abort(self) -> None: ...  # stop; the output is garbage


@dataclass(frozen=True)
class Compression:
    """How the layer blob is stored: its media type and a compressor factory.

    The compressor must be deterministic (same bytes for the same input on
    any machine). Changing it changes the layer blob's digest and so the
    manifest digest, but not the diff_id, nor the image id.
    """

    media_type: str
    open: Callable[[BinaryIO], Compressor]


class _Plain:
    """The identity compressor: the tar is stored as it is."""

    def __init__(self, out: BinaryIO):
        self._out = out

    def write(self, data) -> int:
        return self._out.write(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


# `archive.ParallelGzipWriter` is looked up at each use, so its worker count follows `archive.default_workers`.
GZIP = Compression(MEDIA_LAYER_GZIP, lambda out: archive.ParallelGzipWriter(out))
UNCOMPRESSED = Compression(MEDIA_LAYER_TAR, _Plain)


@dataclass(frozen=True)
class Layer:
    """A finished layer blob: its descriptor and the digest of its uncompressed tar."""

    media_type: str
    digest: str  # sha256:<hex> of the blob as stored
    size: int  # bytes of the blob as stored
    diff_id: str  # sha256:<hex> of the uncompressed tar

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _Counting:
    """Writes through to `out`, hashing and counting every byte."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._out.write(data)


class LayerSink:
    """A write-only file for the layer tar; it becomes a blob of the layout at `directory`.

    Written bytes are hashed (the diff_id) and compressed into a temporary
    file in `blobs/sha256/`, whose stored bytes are hashed too. `close()`
    finishes the stream, flushes it to disk and renames it to its digest;
    it returns the `Layer` (also `sink.layer`) and may be called again.
    Leaving a `with` block by an exception, or `abort()`, removes the
    temporary file. `write` does not keep the buffer it is given.
    """

    def __init__(self, directory: Path | str, compression: Compression = GZIP):
        self.directory = Path(directory)
        self.media_type = compression.media_type
        self.layer: Layer | None = None
        blobs = self.directory / BLOBS_DIR
        fsops.make_dirs(blobs)
        fsops.sweep(blobs)
        fd, name = tempfile.mkstemp(prefix=f"{fsops.TMP_PREFIX}layer-{os.getpid()}-", dir=blobs)
        self._tmp = Path(name)
        # an uncompressed layer is its own tar: one hash serves as digest and diff_id
        self._diff_id = None if compression is UNCOMPRESSED else hashlib.sha256()
        self._file = None
        self._compressor = None
        try:
            os.fchmod(fd, fsops.ARTIFACT_FILE_MODE)
            self._file = open(fd, "wb")
            self._stored = _Counting(self._file)
            self._compressor = compression.open(self._stored)
        except BaseException:
            if self._file is None:
                os.close(fd)
            self.abort()
            raise

    def write(self, data: bytes | memoryview) -> int:
        if self.layer is not None or self._file is None:
            raise ValueError("write to a closed LayerSink")
        if self._diff_id is not None:
            self._diff_id.update(data)
        return self._compressor.write(data)

    def close(self) -> Layer:
        if self.layer is not None:
            return self.layer
        if self._file is None:
            raise ValueError("close of an aborted LayerSink")
        try:
            self._compressor.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            digest = self._stored.sha256.hexdigest()
            os.replace(self._tmp, self.directory / BLOBS_DIR / digest)
        except BaseException:
            self.abort()
            raise
        self._file = None
        diff_id = self._diff_id.hexdigest() if self._diff_id is not None else digest
        self.layer = Layer(self.media_type, f"sha256:{digest}", self._stored.size, f"sha256:{diff_id}")
        return self.layer

    def abort(self) -> None:
        """Drop the layer: stop the compressor and remove the temporary file."""
        if self._compressor is not None:
            self._compressor.abort()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LayerSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- the layout -------------------------------------------------------------------


def write_layout(directory: Path | str, sink: LayerSink, config: OciConfig, version: str) -> str:
    """Finish the layout at `directory` around `sink`'s layer; return the manifest digest `sha256:<hex>`.

    Closes `sink` if it is still open, then writes the config blob, the
    manifest blob, `oci-layout` and last `index.json`, whose one manifest is
    tagged `version`.
    """
    directory = Path(directory)
    if sink.directory != directory:
        raise ValueError(f"the layer was written for {sink.directory}, not {directory}")
    if not REF.match(version):
        raise ValueError(f"version {version!r} is not a valid OCI ref.name")
    layer = sink.close()
    config_descriptor = _write_blob(directory, MEDIA_CONFIG, canonical_json(config.to_json([layer.diff_id])))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor,
        "layers": [layer.descriptor()],
    }
    manifest_descriptor = _write_blob(directory, MEDIA_MANIFEST, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**manifest_descriptor, "annotations": {REF_NAME: version}}],
    }
    _publish(directory / LAYOUT_FILE, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
    _publish(directory / INDEX_FILE, canonical_json(index))
    return manifest_descriptor["digest"]


def _write_blob(directory: Path, media_type: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    _publish(directory / BLOBS_DIR / digest, data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _publish(path: Path, data: bytes) -> None:
    """Write a small file (0644 whatever the umask) under a temporary name, flush it, rename it."""
    fsops.make_dirs(path.parent)
    tmp = path.parent / f"{fsops.TMP_PREFIX}{path.name}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fsops.write_file(tmp, data)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
