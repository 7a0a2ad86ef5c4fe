"""The release root's side of its registry: what is there, what to push, what to restore.

A release root with a registry (`podrelease.yaml`'s `registry:`, or
`PODRELEASE_REGISTRY`) keeps every artifact in both places. An artifact is
*present* when it is on disk or in the registry; one that is only in the
registry is restored, verified, when a local step needs it (an image a new
pod links, a base an image builds on, a pod a bundle packs), and never
rebuilt. What this root builds or assembles is pushed, with everything it
needs before it (images and volumes before their pod, the pod before tip),
so a tag in the registry is always complete.

Restores go through `registry.store`, which builds each artifact aside and
renames it into place: a restore that dies leaves nothing half-written, and
the next run starts it again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core import fsops, oci
from ..core.errors import IntegrityError, RegistryError, UserError
from ..core.hashing import sha512_file
from ..core.names import Label
from ..core.podjson import PodJson, read_pod_json
from ..core.signing import SIGNATURE_NAME, signed_here
from ..model.layout import POD_JSON, ReleaseRoot
from ..model.plan import TipUpdate
from ..model.settings import Setting, registry_setting
from ..model.tip import tip_version
from ..registry.artifacts import ArtifactFile, artifact_digest
from ..registry.references import companion_tag, parse_registry, signature_tag, tag_of
from ..registry.store import POD_TYPE, SHA512_FILE, SIGNATURE_TYPE, VOLUME_TYPE, RegistryStore


def open_publisher(root: ReleaseRoot, setting: Setting | None = None) -> Publisher | None:
    """The root's publisher, or None without a registry; a bad setting is a UserError."""
    setting = setting or registry_setting(root.path)
    if setting is None:
        return None
    try:
        registry = parse_registry(setting.text)
    except ValueError as err:
        raise UserError(setting.shown, setting.line, str(err)) from None
    return Publisher(root, RegistryStore(registry))


class Publisher:
    """One release root and its registry."""

    def __init__(self, root: ReleaseRoot, store: RegistryStore):
        self.root = root
        self.store = store
        self.registry = store.registry
        self._tips: dict[str, bool] = {}

    # ---------------------------------------------------------------- names

    def _repository(self, kind: str, label: Label, *channel: str) -> str:
        try:
            if kind == "image":
                return self.registry.image(label.path, label.name)
            if kind == "volume":
                return self.registry.volume(label.path, label.name)
            return self.registry.pod(channel[0], label.path, label.name)
        except ValueError as err:
            raise UserError(None, None, f"{kind} {label}: {err}") from None

    def _tag(self, version: str) -> str:
        try:
            return tag_of(version)
        except ValueError as err:
            raise UserError(None, None, str(err)) from None

    # ---------------------------------------------------------------- present in the registry

    def has_image(self, label: Label, version: str) -> bool:
        return self._tag(version) in self.store.tags(self._repository("image", label))

    def has_volume(self, label: Label, version: str) -> bool:
        return self._tag(version) in self.store.tags(self._repository("volume", label))

    def has_pod(self, channel: str, pod: Label, version: str) -> bool:
        return self._tag(version) in self.store.tags(self._repository("pod", pod, channel))

    @staticmethod
    def pod_of(release: str) -> tuple[str, Label]:
        """The channel and pod of a release name `<channel>/<label_path>/<pod>/<version>`."""
        channel, *path, pod, _version = release.split("/")
        return channel, Label("/".join(path), pod)

    def has_release(self, release: str) -> bool:
        """Whether the registry holds the pod of release `<channel>/<label_path>/<pod>/<version>`."""
        channel, pod = self.pod_of(release)
        return self.has_pod(channel, pod, release.rpartition("/")[2])

    def has_image_named(self, name: str) -> bool:
        """Whether the registry holds image `<label_path>/<image>/<version>`."""
        *path, image, version = name.split("/")
        return self.has_image(Label("/".join(path), image), version)

    def pod_versions(self, channel: str, pod: Label) -> set[str]:
        """The versions of a pod the registry holds in a channel."""
        return self.store.versions(self._repository("pod", pod, channel))

    def prefetch(self, images: list[tuple[Label, str]] | None = None, volumes: list[tuple[Label, str]] | None = None,
                 pods: list[tuple[str, Label]] | None = None, tips: list[TipUpdate] | None = None) -> None:
        """Ask the registry about all of these at once (each answer is then cached for this run)."""
        repositories = ([self._repository("image", label) for label, _ in images or ()]
                        + [self._repository("volume", label) for label, _ in volumes or ()]
                        + [self._repository("pod", pod, channel) for channel, pod in pods or ()])
        unknown = [tip for tip in tips or () if tip.name not in self._tips]
        tip_repositories = [self._repository("pod", tip.pod, tip.channel) for tip in unknown]
        self.store.prefetch(repositories + tip_repositories, tips=tip_repositories)
        for tip in unknown:
            self._tips[tip.name] = self._ask_tip(tip)  # answered from what prefetch read

    def _ask_tip(self, tip: TipUpdate) -> bool:
        return self.store.tip_is_current(self._repository("pod", tip.pod, tip.channel), _chooser(tip))

    # ---------------------------------------------------------------- restore (the caller holds the artifact's lock)

    def ensure_image(self, label: Label, version: str, expect_oci: str | None = None, aci_size: int | None = None) -> None:
        """The image on disk, restored from the registry if it is only there."""
        target = self.root.image_dir(label, version)
        if (target / SHA512_FILE).is_file():
            return
        self.store.restore_image(self._repository("image", label), version, target, expect_oci, aci_size)

    def ensure_volume(self, label: Label, version: str) -> None:
        from . import assembly  # the builders load only when something is restored or pushed
        if assembly.volume_files(self.root, label, version, checked=False):
            return
        target = self.root.volume_dir(label, version)
        self.store.restore_files(self._repository("volume", label), self._tag(version), target, VOLUME_TYPE)

    def ensure_pod(self, channel: str, pod: Label, version: str) -> None:
        """The pod directory on disk with its images and volumes, restored and checked against its pod.json."""
        from . import assembly  # the builders load only when something is restored or pushed
        final = self.root.pod_dir(channel, pod, version)
        if (final / POD_JSON).is_file():
            return
        repository = self._repository("pod", pod, channel)
        with fsops.building_dir(final) as tmp:
            reference = f"{repository}:{self._tag(version)}"
            self.store.fetch_files(reference, tmp, POD_TYPE)
            if not (tmp / SIGNATURE_NAME).exists():  # signed after it was pushed, perhaps
                self.store.fetch_signature(repository, version, tmp)
            record = read_pod_json(tmp / POD_JSON, reference)
            _check_pod_files(record, tmp, reference)
            for image in record.images:
                self.ensure_image(image.label, image.version, image.oci, image.aci.size)
                assembly.link_into_pod(final, tmp, image.name, self.root.image_dir(image.label, image.version))
            for volume in record.volumes:
                self.ensure_volume(volume.label, volume.version)
                _check_volume(record, volume.name, tmp, self.root.volume_dir(volume.label, volume.version), reference)
                assembly.link_into_pod(final, tmp, volume.name, self.root.volume_dir(volume.label, volume.version))

    # ---------------------------------------------------------------- push

    def push_image(self, label: Label, version: str) -> None:
        self.store.push_image(self.root.image_dir(label, version), self._repository("image", label), version)

    def push_volume(self, label: Label, version: str) -> None:
        from . import assembly  # the builders load only when something is restored or pushed
        files = assembly.volume_files(self.root, label, version)
        self.store.push_files(self._repository("volume", label), version, files, VOLUME_TYPE,
                              self.root.volume_dir(label, version).parent)

    def push_pod(self, channel: str, pod: Label, version: str) -> None:
        """Push a released pod and, first, whatever it needs that the registry lacks."""
        pod_dir = self.root.pod_dir(channel, pod, version)
        record = read_pod_json(pod_dir / POD_JSON, self.root.shown(pod_dir / POD_JSON))
        for image in record.images:
            if not self.has_image(image.label, image.version):
                self.push_image(image.label, image.version)
            else:
                self._check_same_image(image.label, image.version, image.oci)
        for volume in record.volumes:
            if not self.has_volume(volume.label, volume.version):
                self.push_volume(volume.label, volume.version)
        self.store.push_files(self._repository("pod", pod, channel), version, _pod_files(pod_dir), POD_TYPE, pod_dir.parent)
        if signed_here(pod_dir):
            self.push_signature(channel, pod, version)

    def signed_here(self, channel: str, pod: Label, version: str) -> bool:
        """Whether this root's pod directory holds its signature."""
        return signed_here(self.root.pod_dir(channel, pod, version))

    def has_signature(self, channel: str, pod: Label, version: str) -> bool:
        """Whether the registry holds a pod version's signature under its own tag (see `push_signature`)."""
        return self._signature_tag(version) in self.store.tags(self._repository("pod", pod, channel))

    def push_signature(self, channel: str, pod: Label, version: str) -> None:
        """Push a pod version's pod.json.sig under its own tag `_sig.<version>`.

        Every signed pod's signature goes there, beside the pod artifact
        that carries it too: a pod signed after it was pushed (a key set
        later) cannot join its immutable artifact, and one place to look
        keeps `published` a question about tags alone.
        """
        pod_dir = self.root.pod_dir(channel, pod, version)
        repository = self._repository("pod", pod, channel)
        raw = self.store.version_manifest(repository, version)
        if raw is None:
            raise RegistryError(f"{self.pod_reference(channel, pod, version)} is not in the registry: its signature signs nothing there")
        held, local = "sha256:" + hashlib.sha256(raw).hexdigest(), self.pod_digests(channel, pod, version)
        if held not in local:
            raise RegistryError(f"{self.pod_reference(channel, pod, version)} holds {held}, not the pod signed here ({local[0]}): "
                                "its signature would verify nothing; release a new version")
        subject = {"mediaType": oci.MEDIA_MANIFEST, "digest": held, "size": len(raw)}
        self.store.push_files(repository, version, [(SIGNATURE_NAME, pod_dir / SIGNATURE_NAME)], SIGNATURE_TYPE,
                              pod_dir.parent, tag=self._signature_tag(version), subject=subject)

    def _signature_tag(self, version: str) -> str:
        try:
            return signature_tag(version)
        except ValueError as err:
            raise UserError(None, None, str(err)) from None

    def _check_same_image(self, label: Label, version: str, local: str | None) -> None:
        """A pod may name an image version the registry has only if the registry's is the one it links."""
        repository = self._repository("image", label)
        held = self.store.version_digest(repository, version)
        if local is not None and held is not None and held != local:
            raise RegistryError(f"{repository}:{self._tag(version)} already holds {held}; this root's image "
                                f"{label} {version} is {local}: version tags are immutable, release a new version")

    # ---------------------------------------------------------------- agreement (doit verify)

    def image_reference(self, label: Label, version: str) -> str:
        return f"{self._repository('image', label)}:{self._tag(version)}"

    def pod_reference(self, channel: str, pod: Label, version: str) -> str:
        return f"{self._repository('pod', pod, channel)}:{self._tag(version)}"

    def published_image(self, label: Label, version: str) -> str | None:
        """The manifest digest the registry holds under an image version's tag; None if it has none."""
        if not self.has_image(label, version):
            return None
        return self.store.version_digest(self._repository("image", label), version)

    def has_companion(self, label: Label, digest: str) -> bool:
        """Whether the registry holds the ACI companion of image manifest `digest`."""
        return companion_tag(digest) in self.store.tags(self._repository("image", label))

    def published_pod(self, channel: str, pod: Label, version: str) -> str | None:
        """The manifest digest the registry holds under a pod version's tag; None if it has none."""
        if not self.has_pod(channel, pod, version):
            return None
        return self.store.version_digest(self._repository("pod", pod, channel), version)

    def pod_digests(self, channel: str, pod: Label, version: str) -> tuple[str, ...]:
        """The manifest digest `push_pod` gives this root's pod directory; for a signed pod, then
        also the digest it had if it was pushed before it was signed."""
        files = [ArtifactFile(title, path) for title, path in _pod_files(self.root.pod_dir(channel, pod, version))]
        unsigned = [file for file in files if file.title != SIGNATURE_NAME]
        digests = (artifact_digest(POD_TYPE, files, version),)
        return digests + (artifact_digest(POD_TYPE, unsigned, version),) if len(unsigned) < len(files) else digests

    # ---------------------------------------------------------------- tip

    def tip_is_current(self, tip: TipUpdate) -> bool:
        if tip.name not in self._tips:
            self._tips[tip.name] = self._ask_tip(tip)
        return self._tips[tip.name]

    def point_tip(self, tip: TipUpdate) -> None:
        self._tips.pop(tip.name, None)
        self.store.point_tip(self._repository("pod", tip.pod, tip.channel), _chooser(tip))


def _pod_files(pod_dir: Path) -> list[tuple[str, Path]]:
    """What a pod's registry artifact holds: the regular files of its directory (not its links), by name."""
    return sorted((entry.name, Path(entry.path)) for entry in os.scandir(pod_dir) if entry.is_file(follow_symlinks=False))


def _chooser(tip: TipUpdate):
    return lambda versions: tip_version(versions, tip.yanked)


def _check_pod_files(record: PodJson, pod_dir: Path, reference: str) -> None:
    """A restored pod directory holds pod.json, its signature, and the files pod.json pins, as pinned: nothing else."""
    allowed = {POD_JSON, SIGNATURE_NAME} | {f.path for f in record.files}
    for entry in os.scandir(pod_dir):
        if entry.name not in allowed:
            raise IntegrityError(f"{reference}: holds {entry.name!r}, which its pod.json does not name")
    for f in record.files:
        path = pod_dir / f.path
        if path.stat().st_size != f.size or sha512_file(path) != f.sha512:
            raise IntegrityError(f"{reference}: file {f.path!r} is not the one pod.json pins")


def _check_volume(record: PodJson, name: str, pod_dir: Path, volume_dir: Path, reference: str) -> None:
    """Each volume file pod.json names is in the restored volume, with its sha512."""
    for volume in record.volumes:
        if volume.name != name:
            continue
        for f in volume.files:
            inside = f.path.split("/", 1)[1]
            if sha512_file(volume_dir / inside) != f.sha512:
                raise IntegrityError(f"{reference}: volume file {f.path!r} does not match its sha512 in pod.json")
