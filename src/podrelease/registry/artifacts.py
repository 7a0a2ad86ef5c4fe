"""Files as an OCI artifact: one manifest whose layers are the files, each titled.

An artifact travels as an OCI image layout on disk, which skopeo copies to
and from a registry like any image. Its manifest (image-spec 1.1) has an
`artifactType`, the empty config, one layer per file with its path in the
`org.opencontainers.image.title` annotation, and optionally a `subject`
(the image an ACI companion belongs to, so registries with the referrers
API list it too) and the version it is, in the manifest's
`org.opencontainers.image.version` annotation (so one read of `tip` says
which version it names).

Writing hard-links each file into the layout's blobs (a copy only across
file systems): an artifact of a 200 MB volume costs one sha256 pass, not a
second copy. The digests depend only on the files, their titles and the
type: the same files give the same manifest on any machine, so two runners
pushing the same artifact push the same bytes.

Reading back trusts nothing: the titles must be safe relative paths, each
once, at most MAX_FILES of them; the blobs must have their declared sizes
(skopeo checked their digests while copying).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import oci
from ..core.errors import RegistryError
from ..core.hashing import digest_and_size

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # of b"{}"
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": EMPTY_DIGEST}
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"  # on the manifest: the version its tag names
MEDIA_FILE = "application/octet-stream"
MAX_FILES = 10_000
MAX_MANIFEST = 4 << 20


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact: where it is, and the path it has inside the artifact."""

    title: str
    path: Path
    media_type: str = MEDIA_FILE


def _place_blob(layout: Path, source: Path, digest: str) -> None:
    target = layout / oci.blob_rel(digest)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, target)


def write_artifact(layout: Path, artifact_type: str, files: list[ArtifactFile], tag: str,
                   subject: dict | None = None, version: str | None = None) -> str:
    """Write the OCI layout of an artifact at `layout` (a new directory); return its manifest digest."""
    (layout / oci.BLOBS_DIR).mkdir(parents=True)
    (layout / oci.LAYOUT_FILE).write_bytes(oci.layout_bytes())
    (layout / oci.blob_rel(EMPTY_DIGEST)).write_bytes(b"{}")
    data = artifact_manifest(artifact_type, files, subject, version,
                             placed=lambda file, digest: _place_blob(layout, file.path, digest))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / oci.blob_rel(digest)).write_bytes(data)
    descriptor = {"mediaType": oci.MEDIA_MANIFEST, "digest": digest, "size": len(data)}
    (layout / oci.INDEX_FILE).write_bytes(oci.index_bytes(descriptor, tag))
    return digest


def artifact_digest(artifact_type: str, files: list[ArtifactFile], version: str | None = None) -> str:
    """The manifest digest `write_artifact` gives these files, without writing anything."""
    return "sha256:" + hashlib.sha256(artifact_manifest(artifact_type, files, version=version)).hexdigest()


def artifact_manifest(artifact_type: str, files: list[ArtifactFile], subject: dict | None = None,
                      version: str | None = None,
                      placed: Callable[[ArtifactFile, str], None] = lambda file, digest: None) -> bytes:
    """The manifest of an artifact of `files` (each read once; `placed` is told its digest)."""
    layers = []
    for file in files:
        hexdigest, size = digest_and_size(file.path, "sha256")
        digest = f"sha256:{hexdigest}"
        placed(file, digest)
        layers.append({"mediaType": file.media_type, "digest": digest, "size": size,
                       "annotations": {TITLE: file.title}})
    manifest = {"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST, "artifactType": artifact_type,
                "config": EMPTY_CONFIG, "layers": layers}
    if subject is not None:
        manifest["subject"] = subject
    if version is not None:
        manifest["annotations"] = {VERSION: version}
    return oci.canonical_json(manifest)


@dataclass(frozen=True)
class Artifact:
    """An artifact read back from a layout: its type, and each file's blob by title."""

    artifact_type: str
    files: dict[str, Path]
    sizes: dict[str, int]


def _safe_title(title: object, where: str) -> str:
    if not isinstance(title, str) or not title or title.startswith("/") or "\0" in title:
        raise RegistryError(f"{where}: a layer has no usable title")
    if any(part in ("", ".", "..") for part in title.split("/")) or len(title) > 4096:
        raise RegistryError(f"{where}: layer title {title[:80]!r} is not a safe relative path")
    return title


@dataclass(frozen=True)
class Layer:
    """One file of an artifact, as its manifest describes it."""

    title: str
    digest: str
    size: int


def artifact_layers(manifest: object, artifact_type: str, where: str) -> list[Layer]:
    """The files an artifact manifest (parsed JSON) describes, checked: its type, safe distinct titles, digests, sizes."""
    if not isinstance(manifest, dict) or manifest.get("artifactType") != artifact_type:
        found = manifest.get("artifactType") if isinstance(manifest, dict) else None
        raise RegistryError(f"{where}: is {found or 'not an artifact'}, expected {artifact_type}")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_FILES:
        raise RegistryError(f"{where}: layers is not a list of at most {MAX_FILES} files")
    found_layers: dict[str, Layer] = {}
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("annotations"), dict):
            raise RegistryError(f"{where}: a layer has no annotations")
        title = _safe_title(layer["annotations"].get(TITLE), where)
        digest, size = layer.get("digest"), layer.get("size")
        if (title in found_layers or not isinstance(digest, str) or not oci.DIGEST.match(digest)
                or not isinstance(size, int) or size < 0):
            raise RegistryError(f"{where}: layer {title[:80]!r} is repeated or has no digest and size")
        found_layers[title] = Layer(title, digest, size)
    return list(found_layers.values())


def read_artifact(layout: Path, tag: str, artifact_type: str, where: str) -> Artifact:
    """The artifact tagged `tag` in `layout`, checked to be of `artifact_type`."""
    try:
        index = json.loads((layout / oci.INDEX_FILE).read_bytes()[:MAX_MANIFEST])
        entry = next(m for m in index["manifests"] if m.get("annotations", {}).get(oci.REF_NAME) == tag)
        path = layout / oci.blob_rel(entry["digest"])
        if path.stat().st_size > MAX_MANIFEST:
            raise RegistryError(f"{where}: the manifest is larger than {MAX_MANIFEST} bytes")
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        raise RegistryError(f"{where}: not a podrelease artifact (no readable manifest tagged {tag!r})") from None
    files: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for layer in artifact_layers(manifest, artifact_type, where):
        blob = layout / oci.blob_rel(layer.digest)
        if not blob.is_file() or blob.stat().st_size != layer.size:
            raise RegistryError(f"{where}: the blob of {layer.title[:80]!r} is missing or not {layer.size} bytes")
        files[layer.title], sizes[layer.title] = blob, layer.size
    return Artifact(artifact_type, files, sizes)
