"""Pod directories: `pod.json` and what it names.

`pod.json` is read with the one reader (`core.podjson.read_pod_json`): it
parses and has the spec's shape; its name, channel and version are its
directory's, and the directory is laid out as podrelease lays one out.
Every symlink is relative, resolves, and stays inside the release root; each
image and volume link leads to the version pod.json names; each image's id
is the id of the image found there, and its image.aci has the sha512 and size
pod.json pins (an image already reported as broken is not blamed again);
each volume file and each pod file still has its pinned sha512 and size
(hashed once, with the images: see scan.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..build import imaging
from ..core.errors import PodJsonError
from ..core.names import quoted
from ..core.podjson import MAX_POD_JSON, Pin, PodJson, read_pod_json
from ..core.signing import SIGNATURE_NAME
from ..model.layout import POD_JSON
from .report import WARNING, Problems, short
from .scan import Home, PodDir, Scan


def read_pod(scan: Scan, problems: Problems, home: Home, pod: PodDir) -> None:
    """Read `pod.json`, check its fields, and note its volume files and pod files for hashing."""
    path = pod.path / POD_JSON
    try:
        doc = read_pod_json(path, scan.root.shown(path))
    except PodJsonError as err:
        _report_unread(problems, pod, path, err)
        return
    pod.doc = doc
    check_pod_fields(problems, home, pod, path, doc)
    for rel in [f.path for v in doc.volumes for f in v.files] + [f.path for f in doc.files]:
        real = scan.realpath(pod.path / rel)
        if scan.inside_root(real) and os.path.isfile(real):
            scan.file_pins.setdefault(real, None)


def _report_unread(problems: Problems, pod: PodDir, path: Path, err: PodJsonError) -> None:
    """Why the reader refused `pod.json`, as verify says it."""
    if err.kind == "json":
        problems.report("pod", path, err.problem, line=err.line)
    elif err.kind == "shape":
        problems.report("pod", path, f"does not match the spec: {err.problem}")
    elif err.problem == "missing":
        problems.report("pod", pod.path, "pod directory has no pod.json")
    elif err.problem == "not a regular file":
        problems.report("pod", path, "pod.json is not a regular file")
    elif err.problem.startswith("larger than"):
        problems.report("pod", path, f"larger than {MAX_POD_JSON >> 20} MiB: not a pod.json")
    else:
        problems.report("pod", path, err.problem)  # cannot read: <why>


def check_pod_fields(problems: Problems, home: Home, pod: PodDir, path: Path, doc: PodJson) -> None:
    if home.label is not None and doc.label != home.label:
        problems.report("pod", path, f"name is {quoted(str(doc.label))}, but its directory holds the pod {home.label}")
    if doc.version != pod.version:
        problems.report("pod", path, f"version is {quoted(doc.version)}, but its directory (and instruction) say {quoted(pod.version)}")
    if doc.channel != home.channel:
        problems.report("pod", path, f"channel is {quoted(doc.channel)}, but it is in channel {quoted(home.channel)}")
    names: dict[str, str] = {POD_JSON: POD_JSON}
    # the reader already vouched for labels, versions, ids, digests and volume paths;
    # what is left is how podrelease itself lays a pod directory out
    for i, image in enumerate(doc.images):
        what = f"images[{i}]"
        if image.name != image.label.name:
            problems.report("pod", path, f"{what}.name is {quoted(image.name)}, but its label is {image.label}")
        if image.path != f"{image.name}/{imaging.IMAGE_FILE}":
            problems.report("pod", path, f"{what}.path is {quoted(image.path)}, not {quoted(image.name + '/' + imaging.IMAGE_FILE)}")
        _unique(problems, names, image.name, f"image {quoted(image.name)}", path)
    for volume in doc.volumes:
        _unique(problems, names, volume.name, f"volume {quoted(volume.name)}", path)
    for i, name in enumerate(f.path for f in doc.files):
        if not name or "/" in name or name in (".", ".."):
            problems.report("pod", path, f"files[{i}] {quoted(name)} is not a file name")
        _unique(problems, names, name, f"file {quoted(name)}", path)
    manifest = doc.manifest
    apps = [(a.get("name"), (a.get("image") or {}).get("id") if isinstance(a.get("image"), dict) else None) for a in manifest.get("apps", [])]
    if apps != [(i.name, i.id) for i in doc.images]:
        problems.report("pod", path, "manifest.apps do not run pod.json's images, one app per image with its id, in order")
    hosts = [v.get("name") for v in manifest.get("volumes", []) if v.get("kind") == "host"]
    if hosts != [v.name for v in doc.volumes]:
        problems.report("pod", path, "manifest.volumes do not declare pod.json's volumes, one host volume each, in order")


def _unique(problems: Problems, names: dict[str, str], name: str, what: str, path: Path) -> None:
    if name in names:
        problems.report("pod", path, f"{what} has the same name as {names[name]} in the pod directory")
    else:
        names[name] = what


# ---------------------------------------------------------------- links and files


def check_pod_links(scan: Scan, problems: Problems, pod: PodDir) -> None:
    """Every symlink resolves inside the root; images, volumes and files are what pod.json says."""
    bad_links = set()
    try:
        entries = sorted(os.scandir(pod.path), key=lambda e: e.name)
    except OSError as err:
        problems.report("pod", pod.path, f"cannot list: {err.strerror}")
        return
    for entry in entries:
        if entry.is_symlink() and not check_link(scan, problems, Path(entry.path)):
            bad_links.add(entry.name)
    doc = pod.doc
    if doc is None:
        return
    expected = {POD_JSON, SIGNATURE_NAME} | {i.name for i in doc.images} | {v.name for v in doc.volumes} | {f.path for f in doc.files}
    for entry in entries:
        if not entry.name.startswith(".") and entry.name not in expected:
            problems.report("pod", Path(entry.path), "not named in pod.json", WARNING)
    root = scan.root
    for image in doc.images:
        label, version = image.label, image.version
        if image.name in bad_links:
            continue
        target = root.image_dir(label, version)
        if not check_named_link(scan, problems, pod.path / image.name, target, f"image {label} {version}"):
            continue
        found = scan.images.get((label, version))
        if found is None:
            problems.report("pod", pod.path / image.name, f"image {label} {version} is not built: {root.shown(target)} is empty")
        elif found.ids and image.id not in found.ids:
            problems.report(
                "pod", pod.path / POD_JSON,
                f"image {label} {version} has id {short(image.id)}, but {root.shown(target)} holds {short(found.id or '')}",
            )
        elif image.oci is not None and not found.broken and image.oci != found.oci:
            problems.report(
                "pod", pod.path / POD_JSON,
                f"image {label} {version} has OCI image {image.oci}, but {root.shown(target)} holds {found.oci or 'none'}",
            )
        elif not found.broken and found.aci is not None and Pin(found.aci.file_sha512, found.aci.size) != image.aci:
            problems.report(
                "pod", pod.path / POD_JSON,
                f"image {label} {version}: pod.json pins its image.aci as {_pin_text(image.aci)}, "
                f"but {root.shown(target)} holds {_pin_text(Pin(found.aci.file_sha512, found.aci.size))}",
            )
    for volume in doc.volumes:
        label, version = volume.label, volume.version
        if volume.name in bad_links:
            continue
        target = root.volume_dir(label, version)
        if not check_named_link(scan, problems, pod.path / volume.name, target, f"volume {label} {version}"):
            continue
        for file in volume.files:
            check_pinned_file(scan, problems, pod.path / file.path, file.pin, "volume file")
    for pod_file in doc.files:
        path = pod.path / pod_file.path
        if "/" in pod_file.path:
            continue  # reported with pod.json's fields
        if not (path.is_file() and not path.is_symlink()):
            problems.report("pod", path, "pod file named in pod.json is missing or not a regular file")
        else:
            check_pinned_file(scan, problems, path, pod_file.pin, "pod file")


def check_link(scan: Scan, problems: Problems, link: Path) -> bool:
    target = os.readlink(link)
    real = scan.realpath(link)
    if os.path.isabs(target):
        problems.report("pod", link, f"symlink -> {target} is absolute; pod links are relative")
        return False
    if not scan.inside_root(real):
        problems.report("pod", link, f"symlink -> {target} leads outside the release root")
        return False
    if not os.path.exists(real):
        problems.report("pod", link, f"symlink -> {target} is dangling: {scan.root.shown(Path(real))} does not exist")
        return False
    return True


def check_named_link(scan: Scan, problems: Problems, link: Path, target: Path, what: str) -> bool:
    shown = scan.root.shown
    if not os.path.lexists(link):
        problems.report("pod", link, f"missing: should link to {what} ({shown(target)})")
        return False
    if not link.is_symlink():
        problems.report("pod", link, f"not a symlink to {what} ({shown(target)})")
        return False
    real = scan.realpath(link)
    if real != scan.realpath(target):
        problems.report("pod", link, f"links to {shown(Path(real))}, but pod.json names {what} ({shown(target)})")
        return False
    return True


def check_pinned_file(scan: Scan, problems: Problems, path: Path, pin: Pin, what: str) -> None:
    """A volume file or pod file still has the sha512 and size pod.json pins."""
    real = scan.realpath(path)
    found = scan.file_pins.get(real)
    if found is None:
        if not scan.inside_root(real):
            problems.report("pod", path, f"{what} leads outside the release root")
        else:
            problems.report("pod", path, f"{what} named in pod.json is missing")
    elif isinstance(found, OSError):
        problems.report("pod", path, f"{what} cannot be read: {found.strerror}")
    elif Pin(*found) != pin:
        problems.report("pod", path, f"{what} changed: it is {_pin_text(Pin(*found))}, pod.json pins {_pin_text(pin)}")


def _pin_text(pin: Pin) -> str:
    return f"sha512 {short(pin.sha512)}, {pin.size} bytes"
