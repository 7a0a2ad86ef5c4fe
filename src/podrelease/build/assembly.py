"""Pod assembly: the pod directory with pod.json, its links, its files; and tip.

A pod directory is immutable once it exists. It is assembled in a temporary
sibling and renamed into place, and `tip` is a new symlink renamed over the
old one, so a reader sees either the old state or the new, never a mix.

Signing. With a signing key (`PODRELEASE_SIGNING_KEY`), `pod.json.sig` (an
SSH signature over pod.json's bytes in the namespace `podrelease-<channel>`,
see core.signing) is made in the temporary sibling with everything else. A
pod assembled without a key gets its signature later, when a run has one:
`sign_pod` adds `pod.json.sig` beside the existing pod.json (hard-linked
into place whole, never replacing one) and never touches pod.json, whose
bytes tools and hosts may already hold.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..core import fsops, signing
from ..core.errors import ContractError, PodJsonError, UserError
from ..core.hashing import pin_file
from ..core.health import health_json
from ..core.names import Label, quoted
from ..core.podjson import json_bytes, read_pod_json
from ..core.safeopen import open_published
from ..model.layout import POD_JSON, ReleaseRoot
from ..model.plan import ImageBuild, PodAssembly, PodVolume, TipUpdate
from ..model.tip import released_versions, tip_version
from . import imaging, oci

AC_VERSION = "0.8.11"
HEX512 = re.compile(r"[0-9a-f]{128}\Z")


# ---------------------------------------------------------------- reading artifacts


def image_id(root: ReleaseRoot, build: ImageBuild) -> str:
    """`sha512-<hex>` from a built image's sha512 file."""
    path = root.image_dir(build.rule.label, build.version) / "sha512"
    try:
        digest = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise UserError(root.shown(path), None, f"image {build.rule.label} {build.version} is not built") from None
    if not HEX512.match(digest):
        raise UserError(root.shown(path), 1, "not a sha512 hex digest")
    return f"sha512-{digest}"


def aci_pin(root: ReleaseRoot, build: ImageBuild) -> dict:
    """`{"sha512", "size"}` of a built image's image.aci as stored: what a host must download."""
    path = root.image_dir(build.rule.label, build.version) / imaging.IMAGE_FILE
    try:
        sha512, size = pin_file(path)
    except OSError as err:
        raise UserError(root.shown(path), None, f"image {build.rule.label} {build.version}: cannot read: {err.strerror}") from None
    return {"sha512": sha512, "size": size}


def pinned(path: Path, shown: str) -> dict:
    """`{"path", "sha512", "size"}` of a file: a volume file or a pod file in pod.json."""
    sha512, size = pin_file(path)
    return {"path": shown, "sha512": sha512, "size": size}


def oci_digest(root: ReleaseRoot, build: ImageBuild) -> str | None:
    """The manifest digest of a built image's OCI layout; None if it predates OCI layouts."""
    layout = root.image_dir(build.rule.label, build.version) / oci.LAYOUT_DIR
    if not layout.exists():
        return None
    try:
        return oci.manifest_digest(layout, build.version)
    except ContractError as err:
        raise UserError(root.shown(layout), None, f"image {build.rule.label} {build.version}: {err}; run doit verify") from None


def volume_files(root: ReleaseRoot, label: Label, version: str, checked: bool = True) -> list[tuple[str, Path]]:
    """A volume version's regular files, as (path inside the volume, path).

    `checked`: each file must be one a release may publish (a UserError if
    not), checked when the volume task runs, before any image is built;
    `_published_sha512` checks again, race-free, on the descriptor it hashes.
    """
    top = root.volume_dir(label, version)
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if name.startswith(".") or not full.is_file():
                continue
            if checked:
                _check_publishable(root, top, full)
            found.append((full.relative_to(top).as_posix(), full))
    return found


def _check_publishable(root: ReleaseRoot, volume_dir: Path, full: Path) -> None:
    """A volume file goes into bundles and onto hosts readable by everyone: one that is a link
    out of its volume (to /etc/shadow, or anywhere), or that is private (its mode, or a
    directory closed to others on its way), is refused."""
    shown = root.shown(full)
    real_top = os.path.realpath(volume_dir)
    if os.path.commonpath([real_top, os.path.realpath(full)]) != real_top:
        raise UserError(shown, None, "a symbolic link leading out of its volume; a volume holds its own files")
    try:
        os.close(open_published(full, volume_dir, shown))
    except ContractError as e:
        raise UserError(shown, None, str(e).removeprefix(f"{shown}: ")) from None


# ---------------------------------------------------------------- pod.json (pure)


def merged_app(image_app: dict, pod: PodAssembly, image: str) -> dict:
    """The image's appc app, then the pod rule, then channel parameters: later wins."""
    extra = list(pod.rule.args) + list(pod.parameters.args)
    if extra and not image_app.get("exec"):
        # the args would become the whole exec: not a program, and not what anyone meant
        raise UserError(pod.instruction.shown, None, f"args {extra} for image {image}, whose app has no exec to append them to")
    app = dict(image_app)
    app["exec"] = list(image_app.get("exec", ())) + list(pod.rule.args) + list(pod.parameters.args)
    environment = {e["name"]: e["value"] for e in image_app.get("environment", ())}
    environment.update(pod.rule.environment)
    environment.update(pod.parameters.environment)
    if environment:
        app["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
    if not app["exec"]:
        del app["exec"]
    return app


def pod_manifest(pod: PodAssembly, ids: dict[str, str], apps: dict[str, dict | None]) -> dict:
    """The appc PodManifest: one app per image, one host volume per volume.

    `apps` holds each image's own app, read from the built image: an image
    built from an older revision runs what that revision said. `doit verify`
    recomputes released manifests with this very function."""
    runtime_apps = []
    for build in pod.images:
        rule = build.rule
        runtime_app: dict = {
            "name": rule.label.name,
            "image": {
                "name": rule.name,
                "id": ids[build.name],
                "labels": [
                    {"name": "version", "value": build.version},
                    {"name": "os", "value": rule.os},
                    {"name": "arch", "value": rule.arch},
                ],
            },
        }
        image_app = apps[build.name]
        if image_app is not None:
            runtime_app["app"] = merged_app(image_app, pod, str(rule.label))
        if pod.volumes:
            runtime_app["mounts"] = [{"volume": v.mount.name, "path": v.mount.path} for v in pod.volumes]
        runtime_apps.append(runtime_app)
    return {
        "acKind": "PodManifest",
        "acVersion": AC_VERSION,
        "apps": runtime_apps,
        "volumes": [{"name": v.mount.name, "kind": "host", "readOnly": v.mount.read_only} for v in pod.volumes],
    }


def pod_json(
    pod: PodAssembly,
    ids: dict[str, str],
    apps: dict[str, dict | None],
    files: dict[str, list[dict]],
    acis: dict[str, dict],
    pod_files: list[dict],
    ocis: dict[str, str | None] | None = None,
) -> dict:
    """The pod.json document. `files` holds each volume's pinned files, `acis` each image's
    image.aci pin, `pod_files` the pod's own files, pinned; `ocis` each image's OCI manifest
    digest (None for an image built before images had OCI layouts); a pod rule's health check
    is recorded too."""
    instruction = pod.instruction
    document = {
        "name": str(instruction.pod),
        "version": instruction.version,
        "channel": instruction.channel,
        "revision": instruction.revision,
        "images": [
            {
                "label": str(b.rule.label),
                "name": b.rule.label.name,
                "version": b.version,
                "id": ids[b.name],
                "path": f"{b.rule.label.name}/image.aci",
                "aci": acis[b.name],
                **({"oci": ocis[b.name]} if ocis and ocis.get(b.name) else {}),
            }
            for b in pod.images
        ],
        "volumes": [
            {"label": str(v.mount.label), "name": v.mount.name, "version": v.version, "files": files[v.mount.name]}
            for v in pod.volumes
        ],
        "files": pod_files,
        "manifest": pod_manifest(pod, ids, apps),
    }
    if pod.rule.health is not None:
        document["health"] = health_json(pod.rule.health)
    return document


# ---------------------------------------------------------------- writing


def assemble_pod(root: ReleaseRoot, pod: PodAssembly, key: Path | None = None) -> None:
    """Write the pod directory unless it already exists (pods are immutable); with
    `key`, sign it (an existing pod without a signature gets one, nothing else)."""
    final = root.pod_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
    if (final / POD_JSON).is_file():
        if key is not None:
            sign_pod(root, pod, key)
        return
    if fsops.in_the_way(final):
        # not ours: a pod directory appears whole, with its pod.json, or not at all
        raise UserError(
            root.shown(final) + "/", None,
            f"is in the way of pod {pod.instruction.pod} {pod.instruction.version}: it has no {POD_JSON}, "
            "so doit did not make it; move it away and run doit again",
        )
    ids = {b.name: image_id(root, b) for b in pod.images}
    apps = {b.name: imaging.read_manifest(root.image_dir(b.rule.label, b.version)).get("app") for b in pod.images}
    ocis = {b.name: oci_digest(root, b) for b in pod.images}
    acis = {b.name: aci_pin(root, b) for b in pod.images}
    with fsops.building_dir(final) as tmp:
        for build in pod.images:
            link_into_pod(final, tmp, build.rule.label.name, root.image_dir(build.rule.label, build.version))
        files = {v.mount.name: _link_volume(root, pod, v, final, tmp) for v in pod.volumes}
        pod_files = [_copy_file(root, pod, relative, tmp) for relative in pod.rule.files]
        document = json_bytes(pod_json(pod, ids, apps, files, acis, pod_files, ocis))
        fsops.write_file(tmp / POD_JSON, document)
        if key is not None:
            fsops.write_file(tmp / signing.SIGNATURE_NAME, signing.sign(document, key, pod.instruction.channel))


def sign_pod(root: ReleaseRoot, pod: PodAssembly, key: Path) -> None:
    """Add `pod.json.sig` to an assembled pod that has none; pod.json stays as it is."""
    final = root.pod_dir(pod.instruction.channel, pod.instruction.pod, pod.instruction.version)
    if os.path.lexists(final / signing.SIGNATURE_NAME):
        return
    path = final / POD_JSON
    try:
        released = read_pod_json(path, root.shown(path))
    except PodJsonError as err:
        raise UserError(None, None, f"{err}; cannot sign it, run doit verify") from None
    if (released.channel, released.version) != (pod.instruction.channel, pod.instruction.version):
        raise UserError(root.shown(path), None, f"says channel {released.channel} version {released.version}, "
                        "not its directory's; cannot sign it, run doit verify")
    fsops.add_file(final / signing.SIGNATURE_NAME, signing.sign(released.raw, key, released.channel))


def link_into_pod(final: Path, tmp: Path, name: str, target: Path) -> None:
    """The pod's relative symlink `name` to an image or volume version directory (made in `tmp`, valid at `final`)."""
    os.symlink(os.path.relpath(target, final), tmp / name)


def _link_volume(root: ReleaseRoot, pod: PodAssembly, volume: PodVolume, final: Path, tmp: Path) -> list[dict]:
    target = root.volume_dir(volume.mount.label, volume.version)
    found = volume_files(root, volume.mount.label, volume.version)
    if not found:
        raise missing_volume(root, volume.mount.label, volume.version, (pod.instruction.shown,))
    link_into_pod(final, tmp, volume.mount.name, target)
    return [_published_pin(root, target, full, f"{volume.mount.name}/{inside}") for inside, full in found]


def _published_pin(root: ReleaseRoot, volume_dir: Path, full: Path, path: str) -> dict:
    """A volume file's entry in pod.json, hashed from the descriptor its checks were made on."""
    _check_publishable(root, volume_dir, full)
    shown = root.shown(full)
    try:
        fd = open_published(full, volume_dir, shown)
    except ContractError as e:
        raise UserError(shown, None, str(e).removeprefix(f"{shown}: ")) from None
    sha512, size = pin_file(fd)
    return {"path": path, "sha512": sha512, "size": size}


def missing_volume(root: ReleaseRoot, label: Label, version: str, needed_by: tuple[str, ...]) -> UserError:
    """Located at the directory expected: one volume version may serve many instructions."""
    expected = root.shown(root.volume_dir(label, version)) + "/"
    who = needed_by[0] if len(needed_by) == 1 else f"{len(needed_by)} instructions"
    return UserError(expected, None, f"volume {label} version {version} is missing (needed by {who}); releases never create volumes")


def _copy_file(root: ReleaseRoot, pod: PodAssembly, relative: str, tmp: Path) -> dict:
    """Copy a pod file into the pod directory; its pin, taken from the copy."""
    source = pod.rule.folder / relative
    folder = os.path.realpath(pod.rule.folder)
    if not os.path.realpath(source).startswith(folder + os.sep) or not source.is_file():
        raise UserError(pod.rule.shown, pod.rule.line, f"pod file {quoted(relative)} is not a file inside {root.shown(pod.rule.folder)}/")
    destination = tmp / os.path.basename(relative)
    shutil.copyfile(source, destination)
    os.chmod(destination, fsops.ARTIFACT_FILE_MODE)
    return pinned(destination, destination.name)


# ---------------------------------------------------------------- tip


def tip_target(root: ReleaseRoot, tip: TipUpdate) -> str | None:
    """The version the tip of `tip`'s pod should point at now."""
    return tip_version(released_versions(root.pod_home(tip.channel, tip.pod)), tip.yanked)


def update_tip(root: ReleaseRoot, tip: TipUpdate) -> None:
    target = tip_target(root, tip)
    link = root.tip(tip.channel, tip.pod)
    if link.is_dir() and not link.is_symlink():
        # a rename cannot replace a directory (e.g. a copy that followed the link)
        raise UserError(
            root.shown(link), None,
            "is a directory, not the tip symlink doit maintains; move it away and run doit again",
        )
    if target is None:
        if link.is_symlink():
            link.unlink()
        return
    fsops.replace_symlink(link, target)
