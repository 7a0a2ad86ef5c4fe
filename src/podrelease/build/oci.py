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

Reading a layout back (`manifest_digest`), the media types and the index
are in `core.oci`, shared with the host, which installs layouts too.

Base images (`from:`) need nothing here: the builder flattens the base's
rootfs and the rule's entries into one rootfs before writing the tar, so the
layout never reuses a base image's layer and one layer is always enough.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ..core import fsops
from ..core.hashing import Writable
from ..core.oci import (  # noqa: F401 (shared with the host: re-exported for the release side)
    BLOBS_DIR,
    DIGEST,
    IMAGE_ID_LABEL,
    INDEX_FILE,
    LAYOUT_DIR,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    MAX_SMALL_BLOB,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_TAR,
    MEDIA_MANIFEST,
    REF_NAME,
    canonical_json,
    index_bytes,
    layout_bytes,
    manifest_digest,
)
from . import archive

if TYPE_CHECKING:
    from ..model.rules import App


IMAGE_ID = re.compile(r"sha512-[0-9a-f]{128}\Z")
# image-spec `ref.name` grammar: components of alphanumerics joined by one of -._:@+ or "--", split by '/'
REF = re.compile(r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*\Z")
PORT = re.compile(r"[1-9][0-9]{0,4}/(tcp|udp|sctp)\Z")
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
    open: Callable[[Writable], Compressor]


class _Plain:
    """The identity compressor: the tar is stored as it is."""

    def __init__(self, out: Writable):
        self._out = out

    def write(self, data) -> int:
        return self._out.write(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


# `archive.ParallelGzipWriter` is looked up at each use, so its worker count follows `archive.default_workers`.
GZIP = Compression(MEDIA_LAYER_GZIP, lambda out: archive.ParallelGzipWriter(out, deflate=archive.PORTABLE))  # a blob is its bytes
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
        self._compressor: Compressor | None = None
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
        if self.layer is not None or self._file is None or self._compressor is None:
            raise ValueError("write to a closed LayerSink")
        if self._diff_id is not None:
            self._diff_id.update(data)
        return self._compressor.write(data)

    def close(self) -> Layer:
        if self.layer is not None:
            return self.layer
        if self._file is None or self._compressor is None:
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
    _publish(directory / LAYOUT_FILE, layout_bytes())
    _publish(directory / INDEX_FILE, index_bytes(manifest_descriptor, version))
    return manifest_descriptor["digest"]


def _write_blob(directory: Path, media_type: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    _publish(directory / BLOBS_DIR / digest, data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _publish(path: Path, data: bytes) -> None:
    """Write a small file (0644 whatever the umask) under a temporary name, flush it, rename it."""
    fsops.make_dirs(path.parent)
    tmp = path.parent / fsops.temporary_name(path.name)
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
