"""Images: `images/<label_path>/<image>/<version>/` against itself.

`image.aci` decompresses (gzip, CRC and length included), the sha512 of the
tar inside equals the `sha512` file, the stored file equals the `aci_sha512`
that `build.json` recorded when it was built (so a flipped bit anywhere in
it is seen, even in gzip header bytes that don't change the tar), the
manifest's version label names the directory's version, and `build.json`
agrees with the directory and the id.

One fault is one line: `build.json` (which records both the id and the
sha512 of `image.aci` as stored) decides whether `image.aci` or `sha512` is
the file that changed, and an image with an error is marked `broken`, so
pods naming it by either its sha512 file's id or its content's id are not
reported again (see pods.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path

from ..build import imaging, oci
from ..core.errors import ContractError
from ..core.hashing import AciDigest
from .report import WARNING, Problems, short
from .scan import ImageDir

MAX_BUILD_JSON = 64 << 20
HEX512 = re.compile(r"[0-9a-f]{128}\Z")


def check_image(problems: Problems, image: ImageDir) -> None:
    """One line per fault, blaming the file that changed when build.json can tell which."""
    folder = image.path
    sha_path, aci_path = folder / imaging.SHA512_FILE, folder / imaging.IMAGE_FILE
    read_sha512_file(problems, image, sha_path)
    record = read_build_record(problems, image)
    aci = image.aci
    if image.unreadable:
        _error(problems, image, aci_path, image.unreadable)
    elif aci is None:
        if os.path.lexists(aci_path):
            _error(problems, image, aci_path, "image.aci is not a regular file")
        else:
            _error(problems, image, folder, "no image.aci: the image is not built")
    elif aci.error or not aci.compressed:
        _error(problems, image, aci_path, _inflate_problem(aci))
    else:
        actual = f"sha512-{aci.tar_sha512}"
        stored_file = record.get("aci_sha512") if record else None
        file_changed = isinstance(stored_file, str) and stored_file != aci.file_sha512
        if image.recorded and aci.tar_sha512 != image.recorded:
            recorded = f"sha512-{image.recorded}"
            if file_changed or (stored_file is None and record and record.get("id") == recorded):
                _error(
                    problems, image, aci_path,
                    f"changed since it was built: it holds {short(actual)}, but its sha512 file and build.json say {short(recorded)}",
                )
            else:
                _error(problems, image, sha_path, f"says {short(recorded)}, but image.aci holds {short(actual)}")
        elif file_changed:
            _error(
                problems, image, aci_path,
                "changed since it was built: its bytes no longer have the sha512 build.json recorded "
                "(the tar inside is intact; its gzip wrapper is not)",
            )
        manifest = read_manifest(aci.head)
        if manifest is not None and not image.broken:
            check_manifest(problems, image, aci_path, manifest)
    if record is not None:
        check_build_record(problems, image, record)
    check_oci(problems, image, record)


def check_oci(problems: Problems, image: ImageDir, record: dict | None) -> None:
    """`oci/` is a whole OCI layout (every blob hashed) tagged with the version, as build.json says.

    An image built before images had OCI layouts has neither `oci/` nor a
    recorded digest: that is history, not a fault.
    """
    layout = image.path / oci.LAYOUT_DIR
    recorded = record.get("oci") if record else None
    if not layout.exists():
        if recorded is not None:
            _error(problems, image, image.path, f"no {oci.LAYOUT_DIR}/, but build.json records OCI image {recorded}")
        return
    try:
        image.oci = oci.manifest_digest(layout, image.version, check_layers=True)
    except ContractError as err:
        _error(problems, image, layout, str(err).removeprefix(f"{layout}/").removeprefix(f"{layout}: "))
        return
    if recorded is not None and recorded != image.oci:
        _error(problems, image, layout, f"holds OCI image {image.oci}, but build.json records {recorded}")


def read_sha512_file(problems: Problems, image: ImageDir, path: Path) -> None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise IsADirectoryError
        with open(path, "rb") as f:
            text = f.read(1024)
        hex_ = text[:-1].decode("ascii") if text.endswith(b"\n") else None
        if hex_ is None or not HEX512.match(hex_):
            _error(problems, image, path, "sha512 file does not hold a sha512 hex digest and a newline")
        else:
            image.recorded = hex_
    except FileNotFoundError:
        _error(problems, image, image.path, "no sha512 file: the image is not built")
    except (OSError, UnicodeDecodeError):
        _error(problems, image, path, "sha512 file is not a readable regular file")


def read_build_record(problems: Problems, image: ImageDir) -> dict | None:
    path = image.path / imaging.BUILD_RECORD_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUILD_JSON + 1)
        record = json.loads(data)
    except FileNotFoundError:
        return None  # the drift check, which needs it, says so
    except (OSError, ValueError) as err:
        problems.report("image", path, f"build.json is unreadable ({err}): drift cannot be checked", WARNING)
        return None
    if not isinstance(record, dict):
        problems.report("image", path, "build.json is unreadable (not an object): drift cannot be checked", WARNING)
        return None
    image.record = record
    return record


def read_manifest(head: bytes) -> dict | None:
    """The ACI's first member is `manifest` (entries are sorted); None if unreadable from `head`."""
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != "manifest" or not member.isfile():
                return {"_not_first": member.name if member is not None else None}
            data = tar.extractfile(member).read()  # type: ignore[union-attr]  # a regular file's member
        manifest = json.loads(data)
        return manifest if isinstance(manifest, dict) else {"_invalid": True}
    except (tarfile.TarError, EOFError, OSError):
        return None  # the manifest does not fit in the head: not checked
    except (ValueError, UnicodeDecodeError):
        return {"_invalid": True}


def check_manifest(problems: Problems, image: ImageDir, path: Path, manifest: dict) -> None:
    if "_not_first" in manifest:
        _error(problems, image, path, f"the tar's first member is {manifest['_not_first']!r}, not the manifest")
        return
    labels = manifest.get("labels")
    versions = [lb.get("value") for lb in labels if isinstance(lb, dict) and lb.get("name") == "version"] if isinstance(labels, list) else []
    if manifest.get("acKind") != "ImageManifest" or len(versions) != 1:
        _error(problems, image, path, "its manifest is not an appc ImageManifest with a version label")
    elif versions[0] != image.version:
        _error(problems, image, path, f"its manifest says version {versions[0]!r}, but it is in the directory of version {image.version!r}")


def check_build_record(problems: Problems, image: ImageDir, record: dict) -> None:
    """build.json names this directory's image and, unless a fault is already reported, its id."""
    path = image.path / imaging.BUILD_RECORD_FILE
    if record.get("label") != str(image.label) or record.get("version") != image.version:
        _error(
            problems, image, path,
            f"records image {record.get('label')} {record.get('version')}, but it is in the directory of {image.label} {image.version}",
        )
    elif not image.broken and image.aci and image.aci.tar_sha512 and record.get("id") != f"sha512-{image.aci.tar_sha512}":
        _error(problems, image, path, f"records id {short(str(record.get('id')))}, but image.aci holds {short('sha512-' + image.aci.tar_sha512)}")


def _error(problems: Problems, image: ImageDir, path: Path, message: str) -> None:
    """An error about `image`: it is broken, and pods naming it are not blamed for it."""
    image.broken = True
    problems.report("image", path, message)


def _inflate_problem(aci: AciDigest) -> str:
    """Why an image.aci is no gzip'd tar, as verify says it."""
    if aci.size == 0:
        return "is empty"
    if not aci.compressed:
        return "does not decompress: not gzip-compressed"
    return f"does not decompress: {aci.error}"
