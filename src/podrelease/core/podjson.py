"""Reading a `pod.json` the way a consumer (bundler, deployer) must: strictly.

A `pod.json` arrives from a pod directory, a bundle, a tarball or a web
server, so nothing in it is trusted: every key the spec names must be there
with the right type, no other key may be, every name is checked with the same
rules the release step used, and every path is relative, normalized and free
of `..` so it can be joined under a directory without escaping it.

pod.json pins every byte a host installs: each image's `image.aci` as stored
(`aci`: sha512 and size, besides the id of the tar inside), each volume file
and each pod file (`{"path", "sha512", "size"}`). The pins are required: a
pod.json written before pinning (pod files as bare paths, no sizes) is refused
with a one-line message, because a signature over it would not cover what a
host installs, and a download it names would have no bound.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import PodJsonError
from .health import ExecCheck, HealthCheck, parse_health
from .names import MAX_NAME, Label, check_ac_name, check_segment, check_version, quoted

IMAGE_ID = re.compile(r"sha512-([0-9a-f]{128})\Z")
SHA512_HEX = re.compile(r"[0-9a-f]{128}\Z")
MAX_POD_JSON = 16 << 20  # bytes; a pod.json is small, anything bigger is not one
# characters of a path in pod.json: it is joined below DIR/pods/<label_path>/<pod>/<version>/,
# and the whole must stay under the kernel's PATH_MAX (4096 bytes)
MAX_PATH = 1024
MAX_SIZE = 1 << 62  # bytes; a pinned size above this is no file's (and overflows off_t arithmetic)

TOP_KEYS = ("name", "version", "channel", "revision", "images", "volumes", "files", "manifest")
IMAGE_KEYS = ("label", "name", "version", "id", "path", "aci")
OPTIONAL_TOP_KEYS = ("health",)
OPTIONAL_IMAGE_KEYS = ("oci",)  # the OCI manifest digest; absent for images built before OCI layouts
OCI_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
ACI_KEYS = ("sha512", "size")
VOLUME_KEYS = ("label", "name", "version", "files")
PINNED_FILE_KEYS = ("path", "sha512", "size")  # a volume file, and a pod file


@dataclass(frozen=True)
class Pin:
    """What a file's bytes must be, as stored: their sha512 (hex) and their count."""

    sha512: str
    size: int


@dataclass(frozen=True)
class ImageRef:
    label: Label
    name: str
    version: str
    id: str  # "sha512-<128 hex>"
    path: str  # relative to the pod directory, e.g. "frontend/image.aci"
    aci: Pin  # the image.aci file as stored (compressed): what a download must be, byte for byte
    oci: str | None = None  # "sha256:<64 hex>" of the image's OCI manifest, if it has one

    @property
    def digest(self) -> str:
        """The hex part of the id: what the image's `sha512` file holds."""
        return self.id[len("sha512-"):]

    @property
    def sha512_path(self) -> str:
        """The image's `sha512` file sits next to its `image.aci`."""
        return str(PurePosixPath(self.path).with_name("sha512"))


@dataclass(frozen=True)
class PodFile:
    path: str  # relative to the pod directory
    sha512: str  # hex, of the file's bytes
    size: int  # bytes

    @property
    def pin(self) -> Pin:
        return Pin(self.sha512, self.size)


@dataclass(frozen=True)
class VolumeFile:
    path: str  # relative to the pod directory, first segment is the volume name
    sha512: str  # hex, of the file as stored (a tarball before extraction)
    size: int  # bytes

    @property
    def pin(self) -> Pin:
        return Pin(self.sha512, self.size)

    @property
    def inner(self) -> str:
        """The path inside the volume's directory."""
        return str(PurePosixPath(*PurePosixPath(self.path).parts[1:]))


@dataclass(frozen=True)
class VolumeRef:
    label: Label
    name: str
    version: str
    files: tuple[VolumeFile, ...]


@dataclass(frozen=True)
class PodJson:
    label: Label
    version: str
    channel: str
    revision: str | None
    images: tuple[ImageRef, ...]
    volumes: tuple[VolumeRef, ...]
    files: tuple[PodFile, ...]
    manifest: dict
    raw: bytes  # the bytes it was parsed from, kept verbatim when installed
    health: HealthCheck | None = None  # how the running pod shows it is healthy

    def artifact_paths(self) -> list[str]:
        """Every path `pod.json` refers to, in a stable order, each once."""
        seen: dict[str, None] = {}
        for image in self.images:
            seen.setdefault(image.path)
            seen.setdefault(image.sha512_path)
        for volume in self.volumes:
            for f in volume.files:
                seen.setdefault(f.path)
        for pod_file in self.files:
            seen.setdefault(pod_file.path)
        return list(seen)

    def pins(self) -> dict[str, Pin]:
        """Every pinned path (each image.aci, volume file and pod file) -> its sha512 and size.

        Not pinned here: an image's `sha512` file (it must hold the id's hex: at most
        a line) and OCI blobs (named by their sha256; the manifest gives their sizes)."""
        pins: dict[str, Pin] = {}
        for image in self.images:
            pins.setdefault(image.path, image.aci)
        for volume in self.volumes:
            for vfile in volume.files:
                pins.setdefault(vfile.path, vfile.pin)
        for pod_file in self.files:
            pins.setdefault(pod_file.path, pod_file.pin)
        return pins


def safe_relpath(text: object, what: str) -> str:
    """A `/`-separated relative path that stays below the directory it is joined to.

    Bounded too: at most MAX_PATH characters, each segment at most MAX_NAME
    bytes (what a file system takes), encodable as UTF-8 (a lone surrogate
    names no file). Every check is one pass over the text.
    """
    if not isinstance(text, str) or not text:
        raise PodJsonError(f"{what}: {quoted(text)} is not a relative path")
    if len(text) > MAX_PATH:
        raise PodJsonError(f"{what}: {quoted(text)} is longer than {MAX_PATH} characters")
    if "\\" in text or "\0" in text:
        raise PodJsonError(f"{what}: {quoted(text)} contains a backslash or NUL")
    if text.startswith("/"):
        raise PodJsonError(f"{what}: {quoted(text)} is absolute; paths in pod.json are relative")
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        raise PodJsonError(f"{what}: {quoted(text)} is not valid UTF-8") from None
    for part in encoded.split(b"/"):
        if part in (b"", b".", b".."):
            raise PodJsonError(f"{what}: {quoted(text)} must be normalized, without '.', '..' or '//'")
        if len(part) > MAX_NAME:
            raise PodJsonError(f"{what}: {quoted(text)} has a segment longer than {MAX_NAME} bytes")
    if text == "pod.json":
        raise PodJsonError(f"{what}: 'pod.json' is reserved")
    return text


def _obj(value: object, keys: tuple[str, ...], what: str, optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise PodJsonError(f"{what} must be an object")
    missing = [k for k in keys if k not in value]
    if missing:
        raise PodJsonError(f"{what}: missing key {quoted(missing[0])}")
    unknown = sorted(k for k in value if k not in keys and k not in optional)
    if unknown:
        raise PodJsonError(f"{what}: unknown key {quoted(unknown[0])}")
    return value


def _list(value: object, what: str) -> list:
    if not isinstance(value, list):
        raise PodJsonError(f"{what} must be a list")
    return value


def _checked(check, value: object, what: str) -> str:
    """Run a `names` check, turning its ValueError into a PodJsonError."""
    try:
        return check(value, what)
    except ValueError as e:
        raise PodJsonError(str(e)) from None


def _sha512(value: object, what: str) -> str:
    if not isinstance(value, str) or not SHA512_HEX.match(value):
        raise PodJsonError(f"{what}: {quoted(value)} is not 128 lowercase hex digits")
    return value


def _size(value: object, what: str) -> int:
    # bool is an int to Python, not to JSON
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise PodJsonError(f"{what}: {quoted(value)} is not a size in bytes (an integer from 0 to 2^62)")
    return value


def _pinned_file(item: object, what: str) -> tuple[str, str, int]:
    """`{"path", "sha512", "size"}`: a volume file or a pod file."""
    if isinstance(item, str):
        raise PodJsonError(f"{what}: {quoted(item)} is a bare path; pod.json pins each file as "
                           "{\"path\", \"sha512\", \"size\"} (written before pinning? release a new version)")
    fields = _obj(item, PINNED_FILE_KEYS, what)
    path = safe_relpath(fields["path"], f"{what}.path")
    return path, _sha512(fields["sha512"], f"{what}.sha512"), _size(fields["size"], f"{what}.size")


def _label(value: object, what: str) -> Label:
    try:
        return Label.parse(value)
    except ValueError as e:
        raise PodJsonError(f"{what}: {e}") from None


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refusing a key given twice: readers disagree on which one wins
    (first or last), so one pod.json could mean two different pods."""
    doc: dict = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {quoted(key)}")
        doc[key] = value
    return doc


def json_bytes(document: object) -> bytes:
    """How podrelease writes JSON for people and machines alike: indented, ending in a newline
    (pod.json, and ops-onboard's records)."""
    return (json.dumps(document, indent=2) + "\n").encode()


def read_pod_json(path: Path | str, shown: str | None = None) -> PodJson:
    """The one way to read a `pod.json` file: a regular file (never through a symlink),
    at most MAX_POD_JSON bytes, checked by `parse_pod_json`.

    Every failure is a PodJsonError whose message starts with `shown` (default:
    the path); its `problem` and `line` say what went wrong without that prefix.
    """
    shown = shown or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PodJsonError.at(shown, "missing") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):  # a symlink; a socket or fifo without a writer
            raise PodJsonError.at(shown, "not a regular file") from None
        raise PodJsonError.at(shown, f"cannot read: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PodJsonError.at(shown, "not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_POD_JSON + 1)
    except OSError as e:
        raise PodJsonError.at(shown, f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    return parse_pod_json(data, shown)


def parse_pod_json(data: bytes, where: str) -> PodJson:
    """Parse and check `data`; `where` names its origin in every message."""
    if len(data) > MAX_POD_JSON:
        raise PodJsonError.at(where, f"larger than {MAX_POD_JSON >> 20} MiB, not a pod.json")
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise PodJsonError.at(where, f"not valid JSON: {e.msg}", line=e.lineno, kind="json", said=f"not valid JSON: {e}") from None
    except UnicodeDecodeError:
        raise PodJsonError.at(where, "not valid JSON: not UTF-8", kind="json") from None
    except ValueError as e:
        # a duplicate key (below) and an integer of more digits than Python converts (ValueError from int())
        raise PodJsonError.at(where, f"not valid JSON: {e}", kind="json") from None
    except RecursionError:  # `[[[[...` deeper than the decoder's stack: hostile, not a pod.json
        raise PodJsonError.at(where, "not valid JSON: nested too deeply", kind="json") from None
    try:
        return parse_document(doc, data)
    except PodJsonError as e:
        raise PodJsonError.at(where, str(e), kind="shape") from None


def parse_document(doc: object, raw: bytes = b"") -> PodJson:
    """Check an already decoded pod.json against the spec's shape (PodJsonError if not)."""
    _obj(doc, TOP_KEYS, "pod.json", optional=OPTIONAL_TOP_KEYS)
    assert isinstance(doc, dict)
    label = _label(doc["name"], "name")
    version = _checked(check_version, doc["version"], "version")
    channel = _checked(check_segment, doc["channel"], "channel")
    revision = doc["revision"]
    if revision is not None and not isinstance(revision, str):
        raise PodJsonError("revision must be a string or null")
    if revision is not None and len(revision) > MAX_NAME:  # `list` shows it; a commit id is 40 or 64 hex
        raise PodJsonError(f"revision {quoted(revision)} is longer than {MAX_NAME} characters")

    images: list[ImageRef] = []
    for i, item in enumerate(_list(doc["images"], "images")):
        what = f"images[{i}]"
        _obj(item, IMAGE_KEYS, what, optional=OPTIONAL_IMAGE_KEYS)
        oci_digest = item.get("oci")
        if oci_digest is not None and (not isinstance(oci_digest, str) or not OCI_DIGEST.match(oci_digest)):
            raise PodJsonError(f"{what}.oci: {quoted(oci_digest)} is not 'sha256:' followed by 64 lowercase hex digits")
        match = IMAGE_ID.match(item["id"]) if isinstance(item["id"], str) else None
        if not match:
            raise PodJsonError(f"{what}.id: {quoted(item['id'])} is not 'sha512-' followed by 128 lowercase hex digits")
        path = safe_relpath(item["path"], f"{what}.path")
        if PurePosixPath(path).name == "sha512":
            raise PodJsonError(f"{what}.path: {quoted(path)} would be its own sha512 file")
        aci = _obj(item["aci"], ACI_KEYS, f"{what}.aci")
        aci_pin = Pin(_sha512(aci["sha512"], f"{what}.aci.sha512"), _size(aci["size"], f"{what}.aci.size"))
        images.append(ImageRef(
            label=_label(item["label"], f"{what}.label"),
            name=_checked(check_ac_name, item["name"], f"{what}.name"),
            version=_checked(check_version, item["version"], f"{what}.version"),
            id=item["id"],
            path=path,
            aci=aci_pin,
            oci=oci_digest,
        ))

    volumes: list[VolumeRef] = []
    for i, item in enumerate(_list(doc["volumes"], "volumes")):
        what = f"volumes[{i}]"
        _obj(item, VOLUME_KEYS, what)
        name = _checked(check_ac_name, item["name"], f"{what}.name")
        vfiles: list[VolumeFile] = []
        for j, f in enumerate(_list(item["files"], f"{what}.files")):
            fwhat = f"{what}.files[{j}]"
            path, sha512, size = _pinned_file(f, fwhat)
            if not path.startswith(name + "/"):
                raise PodJsonError(f"{fwhat}.path: {quoted(path)} is not inside the volume's directory {quoted(name + '/')}")
            vfiles.append(VolumeFile(path, sha512, size))
        volumes.append(VolumeRef(
            label=_label(item["label"], f"{what}.label"),
            name=name,
            version=_checked(check_version, item["version"], f"{what}.version"),
            files=tuple(vfiles),
        ))

    files = tuple(PodFile(*_pinned_file(f, f"files[{i}]")) for i, f in enumerate(_list(doc["files"], "files")))

    # Counted once (not `names.count` per name): a 16 MiB pod.json holds ~10^5 names.
    counts = Counter([im.name for im in images] + [v.name for v in volumes])
    dupes = sorted(n for n, count in counts.items() if count > 1)
    if dupes:
        raise PodJsonError(f"name {quoted(dupes[0])} is used by more than one image or volume")
    if len({f.path for f in files}) != len(files):
        raise PodJsonError("files lists the same file twice")

    health = parse_health(doc.get("health"))
    if isinstance(health, ExecCheck) and health.app not in {im.name for im in images}:
        raise PodJsonError(f"health.exec.app: {quoted(health.app)} is not one of the pod's images")
    pod = PodJson(label, version, channel, revision, tuple(images), tuple(volumes), files, doc["manifest"], raw, health)
    _check_paths_disjoint(pod)
    _check_manifest(pod)
    return pod


def _check_paths_disjoint(pod: PodJson) -> None:
    """No artifact path may also be a directory of another (they share one tree).

    One sort, then one pass over neighbours: with `/` read as the lowest
    character (NUL, which no path holds), every path below a file `f`
    sorts right after `f` itself, so only neighbours need comparing. The
    obvious check, spelling out every parent of every path, makes n strings
    of up to n segments for a path of n segments: a pod.json of 40 KiB then
    takes gigabytes.
    """
    keyed = sorted((path.replace("/", "\0"), path) for path in pod.artifact_paths())
    for (key, path), (next_key, next_path) in itertools.pairwise(keyed):
        if next_key.startswith(key + "\0"):
            raise PodJsonError(f"path {quoted(path)} is both a file and the directory of {quoted(next_path)}")


def _check_manifest(pod: PodJson) -> None:
    """The manifest is what ops-onboard installs (its host volumes' `source` set): it must
    be one `actool validate` accepts, so every name is checked where appc checks it."""
    m = pod.manifest
    if not isinstance(m, dict):
        raise PodJsonError("manifest must be an object")
    if m.get("acKind") != "PodManifest":
        raise PodJsonError(f"manifest.acKind is {quoted(m.get('acKind'))}, expected 'PodManifest'")
    if not isinstance(m.get("acVersion"), str):
        raise PodJsonError("manifest.acVersion must be a string")
    ids = {im.id for im in pod.images}
    apps: set[str] = set()
    for i, app in enumerate(_list(m.get("apps", []), "manifest.apps")):
        image = app.get("image") if isinstance(app, dict) else None
        image_id = image.get("id") if isinstance(image, dict) else None
        if image_id not in ids:
            raise PodJsonError(f"manifest.apps[{i}] runs image {quoted(image_id)}, which is not among pod.json's images")
        name = _checked(check_ac_name, app.get("name"), f"manifest.apps[{i}].name")
        if name in apps:
            raise PodJsonError(f"manifest.apps[{i}]: app {quoted(name)} is declared twice")
        apps.add(name)
    declared = {v.name for v in pod.volumes}
    seen: set[str] = set()
    for i, vol in enumerate(_list(m.get("volumes", []), "manifest.volumes")):
        what = f"manifest.volumes[{i}]"
        if not isinstance(vol, dict) or not isinstance(vol.get("name"), str):
            raise PodJsonError(f"{what} must be an object with a name")
        name = _checked(check_ac_name, vol["name"], f"{what}.name")
        if name in seen:  # actool: "duplicate volume name"; which one would be mounted?
            raise PodJsonError(f"{what}: volume {quoted(name)} is declared twice")
        seen.add(name)
        if vol.get("kind") not in ("host", "empty"):
            raise PodJsonError(f"{what}.kind {quoted(vol.get('kind'))} is not 'host' or 'empty'")
        for flag in ("readOnly", "recursive"):
            if flag in vol and not isinstance(vol[flag], bool):
                raise PodJsonError(f"{what}.{flag} must be true or false")
        if vol["kind"] == "host" and name not in declared:
            raise PodJsonError(f"{what}: host volume {quoted(name)} is not among pod.json's volumes")
        if vol["kind"] == "empty" and name in declared:
            raise PodJsonError(f"{what}: volume {quoted(name)} of pod.json is not a host volume")
    missing = sorted(declared - seen)
    if missing:
        raise PodJsonError(f"volume {quoted(missing[0])} has no host volume in the manifest")


def manifest_with_sources(pod: PodJson, sources: dict[str, str]) -> dict:
    """The pod manifest with each host volume's `source` set from `sources` (name -> abs path)."""
    manifest = json.loads(json.dumps(pod.manifest))
    for vol in manifest.get("volumes", []):
        if vol.get("kind") == "host":
            vol["source"] = sources[vol["name"]]
    return manifest
