"""The registry as the shared release store: push, restore, and the tip tag.

Invariants, each relied on by a runner that finds something in the registry:

- A version tag is complete. Everything it needs is pushed before it: an
  image's ACI companion before the image's version tag, a pod's images and
  volumes before the pod's tag (the caller's order), a layout's blobs
  before its manifest (skopeo's). So a push that dies half-way leaves
  blobs nobody names and no tag: the next run finds the tag missing and
  pushes again, and blobs already there are not sent twice.
- A version tag never changes. Before a push the tag is read: the same
  digest means the work is done (a racing runner pushed the same
  reproducible bytes), another digest is refused naming both. After a push
  it is read again, so a racer that pushed other bytes at the same moment
  is caught too.
- What is restored is checked before it appears: a restore is built in a
  temporary sibling (`fsops.building_dir`), verified (image id of the ACI,
  its `sha512` file, the OCI manifest digest against what the caller
  expects, the layout's layers), and only then renamed into place.
- The tip tag ends at the version the caller's rule chooses among the
  versions the registry holds, whichever runner writes last: each runner,
  after writing tip, reads the tags again and repeats until tip already
  names the chosen version. The last writer's check sees every version
  pushed before it; a version pushed after it is followed by its pusher's
  own tip step. With no version to choose (every one yanked), tip holds
  the no-tip artifact instead: a registry deletes manifests, not tags, and
  deleting tip's manifest would delete the version it names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core import fsops, oci
from ..core.errors import ContractError, IntegrityError, RegistryError
from ..core.hashing import AciDigest, AciDigester, aci_digest, check_sha512_file, short
from ..core.progress import Progress
from ..core.signing import MAX_SIGNATURE, SIGNATURE_NAME
from .artifacts import VERSION, ArtifactFile, Layer, artifact_layers, read_artifact, write_artifact
from .distribution import Declined, Reads
from .references import TIP_TAG, Registry, companion_tag, signature_tag, tag_of, version_of
from .skopeo import Skopeo

IMAGE_FILE = "image.aci"
SHA512_FILE = "sha512"
BUILD_RECORD_FILE = "build.json"
COMPANION_FILES = (IMAGE_FILE, SHA512_FILE, BUILD_RECORD_FILE)
ACI_TYPE = "application/vnd.podrelease.image.aci.v1"
POD_TYPE = "application/vnd.podrelease.pod.v1"
VOLUME_TYPE = "application/vnd.podrelease.volume.v1"
SIGNATURE_TYPE = "application/vnd.podrelease.signature.v1"
NO_TIP_TYPE = "application/vnd.podrelease.no-tip.v1"  # what tip holds once every version is yanked
NO_TIP_NOTE = b"Every version of this pod is yanked: there is no tip to deploy.\n"
MEDIA_ACI = "application/vnd.appc.aci+gzip"
LOCAL_TAG = "artifact"
TIP_ATTEMPTS = 20
COMPANION_SLACK = 16 << 20  # bytes beside image.aci in its companion: sha512 and build.json
PUSH_ATTEMPTS = 3
PUSH_BACKOFF = 0.2  # seconds before the second attempt; doubled before each next one
PARALLEL_QUERIES = 8  # reads in flight at once (connections, or skopeo processes)


class RegistryStore:
    """One registry, as this process sees it: tags are listed once per repository and process."""

    def __init__(self, registry: Registry, skopeo: Skopeo | None = None):
        self.registry = registry
        self.skopeo = skopeo or Skopeo(registry.host)
        self.reads = Reads(self.skopeo)
        self._tags: dict[str, set[str]] = {}
        self._tips: dict[str, bytes | None] = {}  # tip manifests read by prefetch

    # ---------------------------------------------------------------- what is there

    def tags(self, repository: str) -> set[str]:
        if repository not in self._tags:
            self._tags[repository] = self.reads.tags(repository)
        return self._tags[repository]

    def prefetch(self, repositories: Iterable[str], tips: Iterable[str] = ()) -> None:
        """List the tags of many repositories, and read the tip of some, all at once.

        A fresh runner asks about every artifact it has not got; the answers
        are kept for this process (`tip_target` and `point_tip` read again).
        """
        missing = sorted(set(repositories) - set(self._tags))
        unread = sorted(set(tips) - set(self._tips))
        if missing or unread:
            with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
                tags = pool.map(self.reads.tags, missing)
                manifests = pool.map(self._read_tip, unread)
                self._tags.update(zip(missing, tags, strict=True))
                self._tips.update(zip(unread, manifests, strict=True))

    def _read_tip(self, repository: str) -> bytes | None:
        return self.reads.manifest(f"{repository}:{TIP_TAG}")

    def has(self, repository: str, version: str) -> bool:
        return tag_of(version) in self.tags(repository)

    def versions(self, repository: str) -> set[str]:
        return {v for v in map(version_of, self.tags(repository)) if v is not None}

    def _pushed(self, repository: str, tag: str) -> None:
        self._tags.setdefault(repository, set()).add(tag)

    def _push(self, layout: Path, local_tag: str, repository: str, tag: str, digest: str) -> None:
        """Push a layout's manifest under `tag` unless the tag already holds it; never overwrite."""
        reference = f"{repository}:{tag}"
        held = self.reads.digest(reference)
        if held == digest:
            self._pushed(repository, tag)
            return
        if held is not None:
            raise RegistryError(f"{reference} already holds {held}; refusing to push {digest} over it: version tags are immutable")
        self._upload(f"oci:{layout}:{local_tag}", reference, digest)
        held = self.reads.digest(reference)
        if held != digest:
            raise RegistryError(f"{reference} holds {held} right after we pushed {digest}: another runner pushed other content under that version")
        self._pushed(repository, tag)

    def _upload(self, source: str, reference: str, digest: str) -> None:
        """skopeo copy to the registry, retried; a failed copy whose result is there anyway is done.

        distribution may answer 500 to two runners writing the same manifest
        at once: the racer's identical push then holds what ours would have.
        """
        for attempt in range(PUSH_ATTEMPTS):
            try:
                self.skopeo.copy(source, f"docker://{reference}")
                return
            except RegistryError:
                if self.reads.digest(reference) == digest:
                    return
                if attempt == PUSH_ATTEMPTS - 1:
                    raise
                time.sleep(PUSH_BACKOFF * 2**attempt)

    # ---------------------------------------------------------------- images

    def push_image(self, image_dir: Path, repository: str, version: str) -> str:
        """Push an image: its ACI companion, then the OCI image under its version tag. Returns the digest."""
        layout = image_dir / oci.LAYOUT_DIR
        digest = oci.manifest_digest(layout, version)
        tag = tag_of(version)
        held = self.reads.digest(f"{repository}:{tag}")
        if held == digest:
            self._pushed(repository, tag)
            return digest
        if held is not None:
            raise RegistryError(f"{repository}:{tag} already holds {held}; refusing to push {digest} over it: version tags are immutable")
        subject = {"mediaType": oci.MEDIA_MANIFEST, "digest": digest, "size": (layout / oci.blob_rel(digest)).stat().st_size}

        def push_companion() -> None:
            with fsops.scratch_dir(image_dir.parent, "push") as scratch:
                files = [ArtifactFile(name, image_dir / name, MEDIA_ACI if name == IMAGE_FILE else "application/octet-stream")
                         for name in COMPANION_FILES]
                companion = write_artifact(scratch / "companion", ACI_TYPE, files, LOCAL_TAG, subject)
                self._push(scratch / "companion", LOCAL_TAG, repository, companion_tag(digest), companion)

        # the companion and the untagged image travel at once; the version tag comes after both
        _at_once(push_companion, lambda: self._upload(f"oci:{layout}:{version}", f"{repository}@{digest}", digest))
        self._tag_pushed(repository, digest, tag)
        return digest

    def _tag_pushed(self, repository: str, digest: str, tag: str) -> None:
        """Give the manifest `digest` (already in the repository) the version tag `tag`, unless another holds it."""
        reference = f"{repository}:{tag}"
        held = self.reads.digest(reference)
        if held is None:
            self._upload(f"docker://{repository}@{digest}", reference, digest)
            held = self.reads.digest(reference)
        if held != digest:
            raise RegistryError(f"{reference} holds {held}, not {digest}: another runner pushed other content under that version")
        self._pushed(repository, tag)

    def version_digest(self, repository: str, version: str) -> str | None:
        """The manifest digest under a version's tag, or None."""
        return self.reads.digest(f"{repository}:{tag_of(version)}")

    def version_manifest(self, repository: str, version: str) -> bytes | None:
        """The manifest under a version's tag, as the registry holds it, or None."""
        return self.reads.manifest(f"{repository}:{tag_of(version)}")

    def restore_image(self, repository: str, version: str, target: Path, expect_oci: str | None = None,
                      aci_size: int | None = None) -> None:
        """Restore an image version directory at `target`: image.aci, sha512, build.json and oci/, verified.

        The OCI image is pulled by its digest (pinned when `expect_oci` is
        given); the companion, named by that digest, is read first and pulled
        by its own digest, its files bounded by `aci_size` (the pinned size of
        image.aci) plus COMPANION_SLACK for `sha512` and `build.json`.
        """
        reference = f"{repository}:{tag_of(version)}"
        digest = self.reads.digest(reference)
        if digest is None:
            raise RegistryError(f"{reference} is not in the registry")
        if expect_oci is not None and digest != expect_oci:
            raise IntegrityError(f"{reference} is {digest}, but the release pins {expect_oci}: the tag was overwritten")
        with fsops.building_dir(target) as tmp:
            layout = tmp / oci.LAYOUT_DIR
            ids: list[str] = []

            def restore_companion() -> None:
                where = f"{repository}:{companion_tag(digest)}"
                raw = self.reads.manifest(where)
                if raw is None:
                    raise RegistryError(f"{where} is not in the registry: the image's ACI cannot be restored")
                layers = _artifact_files(raw, ACI_TYPE, where)
                if {layer.title for layer in layers} != set(COMPANION_FILES) or len({layer.digest for layer in layers}) != len(layers):
                    raise RegistryError(f"{where}: holds {sorted(layer.title for layer in layers)}, not {list(COMPANION_FILES)}")
                declared = sum(layer.size for layer in layers)
                if aci_size is not None and declared > aci_size + COMPANION_SLACK:
                    raise RegistryError(f"{where}: its files total {declared} bytes; the pinned image.aci has {aci_size}")
                try:
                    aci = self._stream_companion(repository, layers, tmp)
                except Declined:  # the registry is left to skopeo: pull the companion, then read the ACI again
                    self._pull_companion(repository, raw, tmp, where)
                    aci = aci_digest(tmp / IMAGE_FILE)
                ids.append(_check_aci(aci, tmp, reference))

            _at_once(lambda: self.skopeo.copy(f"docker://{repository}@{digest}", f"oci:{layout}:{version}"), restore_companion)
            _canonical_layout(layout, digest, version)
            _check_oci(layout, version, digest, ids[0], reference)
            _artifact_modes(tmp)

    def _stream_companion(self, repository: str, layers: list[Layer], into: Path) -> AciDigest:
        """The companion's files written into `into` over HTTP, the ACI read for its id as it arrives: one pass."""
        digester = AciDigester(background=True)
        try:
            for layer in layers:
                with open(into / layer.title, "wb") as out, Progress(f"{repository} {layer.title}", layer.size) as shown:
                    sinks = (out.write, digester.update) if layer.title == IMAGE_FILE else (out.write,)

                    def sink(data: bytes, sinks=sinks, shown=shown) -> None:
                        for each in sinks:
                            each(data)
                        shown.advance(len(data))

                    self.reads.blob(repository, layer.digest, layer.size, sink)
        finally:
            aci = digester.finish()  # also ends its hashing thread when a blob was declined
        return aci

    def _pull_companion(self, repository: str, raw: bytes, into: Path, where: str) -> None:
        """The companion's files copied into `into` by skopeo (by the digest of the manifest `raw`)."""
        companion = into / ".companion"
        self.skopeo.copy(f"docker://{repository}@sha256:{hashlib.sha256(raw).hexdigest()}", f"oci:{companion}:{LOCAL_TAG}")
        found = read_artifact(companion, LOCAL_TAG, ACI_TYPE, where)
        for name in COMPANION_FILES:
            os.replace(found.files[name], into / name)
        shutil.rmtree(companion)

    # ---------------------------------------------------------------- volumes and pods

    def push_files(self, repository: str, version: str, files: Iterable[tuple[str, Path]], artifact_type: str,
                   scratch_parent: Path, tag: str | None = None, subject: dict | None = None) -> str:
        """Push files (path inside the artifact, where it is) as one artifact of `version`, under
        `tag` (by default the version's), about `subject` (a descriptor) if given."""
        with fsops.scratch_dir(scratch_parent, "push") as scratch:
            layout = scratch / "artifact"
            digest = write_artifact(layout, artifact_type, [ArtifactFile(t, p) for t, p in files], LOCAL_TAG,
                                    subject=subject, version=version)
            self._push(layout, LOCAL_TAG, repository, tag or tag_of(version), digest)
        return digest

    def restore_files(self, repository: str, tag: str, target: Path, artifact_type: str,
                      check: Callable[[Path], None] = lambda tmp: None) -> None:
        """Restore an artifact's files under `target` (built aside, `check`ed, renamed into place)."""
        reference = f"{repository}:{tag}"
        with fsops.building_dir(target) as tmp:
            self.fetch_files(reference, tmp, artifact_type)
            check(tmp)
            _artifact_modes(tmp)

    def fetch_files(self, reference: str, into: Path, artifact_type: str, max_bytes: int | None = None) -> dict[str, int]:
        """Copy an artifact's files into the directory `into`; returns each path's size.

        The manifest is read first and the copy made by its digest, so what
        is checked (type, total size at most `max_bytes`) is what arrives.
        """
        raw = self.reads.manifest(reference)
        if raw is None:
            raise RegistryError(f"{reference} is not in the registry")
        declared = sum(layer.size for layer in _artifact_files(raw, artifact_type, reference))
        if max_bytes is not None and declared > max_bytes:
            raise RegistryError(f"{reference}: its files total {declared} bytes, more than the {max_bytes} allowed")
        repository = reference.rpartition(":")[0]
        into.mkdir(parents=True, exist_ok=True)
        layout = into / ".artifact"
        self.skopeo.copy(f"docker://{repository}@sha256:{hashlib.sha256(raw).hexdigest()}", f"oci:{layout}:{LOCAL_TAG}")
        found = read_artifact(layout, LOCAL_TAG, artifact_type, reference)
        for title, blob in found.files.items():
            destination = into / title
            fsops.make_dirs(destination.parent, below=into)
            shutil.copyfile(blob, destination)
        shutil.rmtree(layout)
        return found.sizes

    def fetch_signature(self, repository: str, version: str, into: Path) -> bool:
        """A pod version's signature pushed after the pod (tag `_sig.<version>`), into `into` as
        pod.json.sig; False if the registry holds none."""
        reference = f"{repository}:{signature_tag(version)}"
        if self.reads.manifest(reference) is None:
            return False
        with fsops.scratch_dir(into, "signature") as scratch:
            sizes = self.fetch_files(reference, scratch, SIGNATURE_TYPE, MAX_SIGNATURE)
            if set(sizes) != {SIGNATURE_NAME}:
                raise RegistryError(f"{reference}: holds {sorted(sizes)}, not {SIGNATURE_NAME}")
            os.replace(scratch / SIGNATURE_NAME, into / SIGNATURE_NAME)
        return True

    # ---------------------------------------------------------------- tip

    def tip_target(self, repository: str, choose: Callable[[set[str]], str | None],
                   fresh: bool = True) -> tuple[str | None, str | None, str | None]:
        """(chosen version, the digest tip should hold, the digest it holds); `fresh` lists the tags again.

        With no version to choose (every one yanked) tip should hold the
        no-tip artifact, if it holds anything.
        """
        if fresh:
            self._tags.pop(repository, None)
            self._tips.pop(repository, None)
        tags = self.tags(repository)
        target = choose(self.versions(repository))
        have = self.reads.digest(f"{repository}:{TIP_TAG}") if TIP_TAG in tags else None
        if target is not None:
            want = self.reads.digest(f"{repository}:{tag_of(target)}")
        else:
            want = _no_tip_digest() if have is not None else None
        return target, want, have

    def tip_is_current(self, repository: str, choose: Callable[[set[str]], str | None]) -> bool:
        """Whether tip names the chosen version (or, with none, no version), by the tags this process
        listed: one read of tip."""
        tags = self.tags(repository)
        target = choose(self.versions(repository))
        if TIP_TAG not in tags:
            return target is None
        raw = self._tips[repository] if repository in self._tips else self._read_tip(repository)
        try:
            manifest = json.loads(raw) if raw is not None else None
            if target is None:
                return manifest is None or manifest.get("artifactType") == NO_TIP_TYPE
            return manifest is not None and manifest["annotations"][VERSION] == target
        except (ValueError, KeyError, TypeError, AttributeError):
            return False

    def tip_withdrawn(self, repository: str) -> bool:
        """Whether tip holds the no-tip artifact: every version of the pod is yanked."""
        raw = self._read_tip(repository)
        try:
            return raw is not None and json.loads(raw).get("artifactType") == NO_TIP_TYPE
        except (ValueError, AttributeError):
            return False

    def point_tip(self, repository: str, choose: Callable[[set[str]], str | None]) -> str | None:
        """Tag `tip` to the chosen version (or withdraw it); repeat until a fresh read agrees (see the module docstring)."""
        for _ in range(TIP_ATTEMPTS):
            target, want, have = self.tip_target(repository, choose)
            if want is None or want == have:
                return target
            if target is None:
                with tempfile.TemporaryDirectory(prefix="podrelease-no-tip-") as scratch:
                    layout, digest = _write_no_tip(Path(scratch))
                    self._upload(f"oci:{layout}:{LOCAL_TAG}", f"{repository}:{TIP_TAG}", digest)
            else:
                self._upload(f"docker://{repository}@{want}", f"{repository}:{TIP_TAG}", want)
        raise RegistryError(f"{repository}:{TIP_TAG} kept moving under us after {TIP_ATTEMPTS} attempts")


def _write_no_tip(scratch: Path) -> tuple[Path, str]:
    """The no-tip artifact's layout in `scratch`, and its digest (the same on every machine)."""
    note = scratch / "no-tip"
    note.write_bytes(NO_TIP_NOTE)
    return scratch / "layout", write_artifact(scratch / "layout", NO_TIP_TYPE, [ArtifactFile("no-tip", note)], LOCAL_TAG)


@functools.cache
def _no_tip_digest() -> str:
    with tempfile.TemporaryDirectory(prefix="podrelease-no-tip-") as scratch:
        return _write_no_tip(Path(scratch))[1]


def _at_once(*steps: Callable[[], object]) -> None:
    """Run independent transfers concurrently (each is a skopeo process); the first failure is raised."""
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()


def _artifact_files(raw: bytes, artifact_type: str, reference: str) -> list[Layer]:
    """The files an artifact manifest's raw bytes describe; a RegistryError if it is not such a manifest."""
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise RegistryError(f"{reference}: its manifest is not a podrelease artifact") from None
    return artifact_layers(manifest, artifact_type, reference)


def _canonical_layout(layout: Path, digest: str, version: str) -> None:
    """Rewrite what skopeo wrote around the blobs as podrelease writes it, so the directory is bit for bit a built one's."""
    size = (layout / oci.blob_rel(digest)).stat().st_size
    descriptor = {"mediaType": oci.MEDIA_MANIFEST, "digest": digest, "size": size}
    (layout / oci.INDEX_FILE).write_bytes(oci.index_bytes(descriptor, version))
    (layout / oci.LAYOUT_FILE).write_bytes(oci.layout_bytes())


def _check_aci(aci: AciDigest, image_dir: Path, reference: str) -> str:
    """The restored ACI's id (from `aci`, one read of it), which its `sha512` file must hold."""
    if aci.tar_sha512 is None:
        raise IntegrityError(f"{reference}: its image.aci is not a valid ACI: {aci.error}")
    image_id = f"sha512-{aci.tar_sha512}"
    check_sha512_file((image_dir / SHA512_FILE).read_bytes(), image_id, f"{reference}: sha512")
    return image_id


def _check_oci(layout: Path, version: str, digest: str, image_id: str, reference: str) -> None:
    """The restored OCI layout is the pinned manifest, made from the restored ACI (its config label)."""
    try:
        # skopeo checked every blob against its digest as it pulled it: the layout's shape is what is left
        found = oci.manifest_digest(layout, version)
        manifest = json.loads((layout / oci.blob_rel(found)).read_bytes())
        config = json.loads((layout / oci.blob_rel(manifest["config"]["digest"])).read_bytes())
        label = (config.get("config") or {}).get("Labels", {}).get(oci.IMAGE_ID_LABEL)
    except (ContractError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise IntegrityError(f"{reference}: its OCI image is not whole: {err}") from None
    if found != digest:
        raise IntegrityError(f"{reference}: layout holds {found}, expected {digest}")
    if label != image_id:
        raise IntegrityError(f"{reference}: the OCI image was made from {short(str(label))}, its ACI is {short(image_id)}")


def _artifact_modes(top: Path) -> None:
    """Restored files get the modes of built ones: 0644 files, 0755 directories."""
    for dirpath, _subdirs, filenames in os.walk(top):
        os.chmod(dirpath, fsops.ARTIFACT_DIR_MODE)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), fsops.ARTIFACT_FILE_MODE)
