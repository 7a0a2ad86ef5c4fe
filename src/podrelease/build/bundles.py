"""Bundles: one pod, self-contained, ready to copy to a machine without the release root.

`bundles/<channel>/<label_path>/<pod>/<version>/` holds `pod.json` and every
file it refers to, each exactly at the path `pod.json` gives (relative to the
pod directory): each image's `image.aci` and the `sha512` next to it, each
volume file, each of the pod's files; and for each image whose pod.json entry
pins an OCI manifest (`"oci": "sha256:..."`), the blobs of its OCI layout
next to `image.aci`: `<image>/oci/blobs/sha256/<hex>` for the manifest, its
config and its layers, each checked by its sha256 (the manifest is read to
know the others; `index.json` is not bundled: the host writes its own). Nothing else, and no symlinks: the pod
directory's symlinks are resolved, so `tar -C <bundle> -cf x.tar .` (or of its
parent) packs everything and unpacks anywhere.

Files are hard links to the release root's (immutable) artifacts where the
filesystem allows, copies otherwise. Every one is checked against `pod.json`
(images by id and by their pinned sha512 and size, volume and pod files by
sha512 and size) before the bundle appears, built aside
and renamed into place like any artifact; an existing bundle is never
rewritten. The pod's signature, `pod.json.sig`, travels beside its pod.json
(not checked here: a bundle is checked where it is deployed); a pod signed
after its bundle was written gets the signature added to the bundle, the
only change a bundle ever sees.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from ..core.errors import ContractError, PodJsonError, UserError
from ..core.fsops import ARTIFACT_FILE_MODE, add_file, building_dir, in_the_way, make_dirs, write_file
from ..core.hashing import AciIdCheck, Check, RecordingCheck, Sha256Check, Sha512Check, check_sha512_file, copy_file_verified, verify_file
from ..core.oci import LAYOUT_DIR, MAX_SMALL_BLOB, blob_rel, parse_manifest
from ..core.podjson import PodJson, read_pod_json
from ..core.safeopen import open_published, read_whole
from ..core.signing import MAX_SIGNATURE, SIGNATURE_NAME

# A hard link is impossible across filesystems, or where the kernel forbids it
# (fs.protected_hardlinks, filesystems without links): copy instead.
COPY_INSTEAD = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def _read_pod_json(pod_dir: Path) -> PodJson:
    path = pod_dir / "pod.json"
    try:
        return read_pod_json(path)
    except PodJsonError as e:
        if e.problem == "missing":
            raise UserError(str(path), None, "missing: is this a released pod directory?") from None
        raise UserError(None, None, str(e)) from None


def bundle_entries(pod: PodJson) -> dict[str, Check]:
    """Every path of a bundle but `pod.json`, each with the check its content must pass."""
    entries: dict[str, Check] = {}
    for image in pod.images:
        entries[image.path] = AciIdCheck(image.id, image.path, (image.aci.sha512, image.aci.size))
        entries[image.sha512_path] = RecordingCheck()  # its content is checked against the id below
    for volume in pod.volumes:
        for f in volume.files:
            entries[f.path] = Sha512Check(f.sha512, f.path, f.size)
    for pod_file in pod.files:
        entries[pod_file.path] = Sha512Check(pod_file.sha512, pod_file.path, pod_file.size)
    return entries


def oci_entries(pod: PodJson, pod_dir: Path) -> dict[str, Check]:
    """The OCI blobs of every image that pins a manifest: path in the bundle -> its sha256 check."""
    entries: dict[str, Check] = {}
    for image in pod.images:
        if image.oci is None:
            continue
        layout = str(PurePosixPath(image.path).with_name(LAYOUT_DIR))
        manifest_rel = f"{layout}/{blob_rel(image.oci)}"
        with open(_open(pod_dir, manifest_rel), "rb") as source:
            data = source.read(MAX_SMALL_BLOB + 1)
        check = Sha256Check(image.oci, manifest_rel)
        check.update(data)
        check.finish()
        entries[manifest_rel] = Sha256Check(image.oci, manifest_rel)
        for blob in parse_manifest(data, manifest_rel).blobs():
            rel = f"{layout}/{blob_rel(blob['digest'])}"
            entries[rel] = Sha256Check(blob["digest"], rel)
    return entries


def _signature(pod_dir: Path) -> bytes | None:
    """The pod's `pod.json.sig` (at most MAX_SIGNATURE bytes, opened like every published
    file: see `_open`), or None when it is unsigned."""
    if not os.path.lexists(pod_dir / SIGNATURE_NAME):
        return None
    try:
        return read_whole(_open(pod_dir, SIGNATURE_NAME), MAX_SIGNATURE, str(pod_dir / SIGNATURE_NAME))
    except ContractError as err:
        raise UserError(None, None, f"cannot bundle: {err}") from None


def _resolve(pod_dir: Path, rel: str) -> Path:
    """The regular file `rel` names in the pod directory, its symlinks followed."""
    src = pod_dir / rel
    try:
        real = Path(os.path.realpath(src, strict=True))
        st = os.stat(real)
    except FileNotFoundError:
        raise UserError(str(src), None, "missing (pod.json refers to it)") from None
    except OSError as e:
        raise UserError(str(src), None, f"cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(str(src), None, "not a regular file (pod.json refers to it)")
    return real


def _open(pod_dir: Path, rel: str) -> int:
    """The file `rel` of the pod directory, opened for reading if it may be published.

    A bundle is copied to hosts and installed readable by everyone: a pod
    directory's link to a file its owner kept private (or one in a directory
    closed to others) must not put it in the bundle (see core.safeopen).
    """
    shown = str(pod_dir / rel)
    try:
        return open_published(pod_dir / rel, pod_dir, shown)
    except ContractError as e:
        raise UserError(shown, None, str(e).removeprefix(f"{shown}: ")) from None


def _link_or_copy(pod_dir: Path, rel: str, dest: Path, check: Check) -> None:
    """Hard-link the file that was checked, then check the shared content; or copy it through
    the check from the descriptor that was checked."""
    fd = _open(pod_dir, rel)
    checked = os.fstat(fd)
    try:
        os.link(os.path.realpath(pod_dir / rel), dest)
    except OSError as e:
        if e.errno not in COPY_INSTEAD:
            os.close(fd)
            raise
        copy_file_verified(fd, dest, check, ARTIFACT_FILE_MODE)
        return
    linked = os.lstat(dest)
    if (linked.st_dev, linked.st_ino) != (checked.st_dev, checked.st_ino):
        dest.unlink()  # the path led elsewhere since the checks: take what was checked
        copy_file_verified(fd, dest, check, ARTIFACT_FILE_MODE)
        return
    os.close(fd)
    verify_file(dest, check)


def write_bundle(pod_dir: Path, bundle_dir: Path, shown: str | None = None) -> None:
    """Write the bundle of the pod directory `pod_dir` at `bundle_dir` (a no-op if it exists).

    `shown` is how messages name `bundle_dir` (e.g. relative to the release root)."""
    pod = _read_pod_json(pod_dir)
    signature = _signature(pod_dir)
    if (bundle_dir / "pod.json").is_file():
        # built artifacts are immutable; a signature made since is added
        if signature is not None and not os.path.lexists(bundle_dir / SIGNATURE_NAME):
            if (bundle_dir / "pod.json").read_bytes() != pod.raw:
                raise UserError(f"{shown or bundle_dir}/pod.json", None, "differs from the pod's; cannot add its signature")
            add_file(bundle_dir / SIGNATURE_NAME, signature)
        return
    if in_the_way(bundle_dir):
        raise UserError(f"{shown or bundle_dir}/", None, "is in the way of the bundle: it is not one (no pod.json); move it away")
    try:
        entries = {**bundle_entries(pod), **oci_entries(pod, pod_dir)}
        for rel in ["pod.json", *entries]:
            _resolve(pod_dir, rel)  # every file is there before the bundle is begun
        with building_dir(bundle_dir) as tmp:
            _link_or_copy(pod_dir, "pod.json", tmp / "pod.json", RecordingCheck())
            if signature is not None:
                write_file(tmp / SIGNATURE_NAME, signature)
            for rel, check in entries.items():
                make_dirs((tmp / rel).parent)
                _link_or_copy(pod_dir, rel, tmp / rel, check)
            for image in pod.images:
                check_sha512_file((tmp / image.sha512_path).read_bytes()[:1024], image.id, image.sha512_path)
    except ContractError as e:
        raise UserError(str(pod_dir), None, f"cannot bundle: {e}") from None
    except OSError as e:
        raise UserError(str(e.filename or bundle_dir), None, f"cannot bundle: {e.strerror}") from None
