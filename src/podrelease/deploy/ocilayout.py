"""An image's OCI layout on the host: fetched blob by blob, checked, laid out for podman.

`stage(source, image, where)` builds `where/oci/` from the source's
`<image>/oci/blobs/sha256/<hex>` files: the manifest blob by the digest
pod.json pins (`ImageRef.oci`), checked by sha256 and parsed strictly
(`core.oci.parse_manifest`); then the config and layer blobs the manifest
names, each checked by its sha256 while it streams; last `oci-layout` and an
`index.json` tagging the manifest with the image's version. Nothing of the
source's own `index.json` is trusted or even read.

Invariant: an installed `images/<id>/oci/` is a complete OCI image layout
whose `index.json` tags exactly the manifest pod.json pinned, every blob
named by its sha256 and matching it. It is built inside the deploy's
staging directory and renamed into place with the image directory (see
`install.py`), so it is never seen half written.

`problem(image_dir, image)` says what is wrong with an installed layout
(None if it holds the pinned manifest intact), so a deploy can tell an image
installed before OCI layouts, or damaged, from a complete one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path, PurePosixPath

from ..core.errors import ContractError
from ..core.fsops import make_dirs, write_file
from ..core.hashing import Sha256Check
from ..core.oci import (
    INDEX_FILE,
    LAYOUT_DIR,
    LAYOUT_FILE,
    MAX_SMALL_BLOB,
    MEDIA_MANIFEST,
    blob_rel,
    index_bytes,
    layout_bytes,
    manifest_digest,
    parse_manifest,
)
from ..core.podjson import ImageRef
from .sources import Source


def source_dir(image: ImageRef) -> str:
    """Where the source keeps the image's layout: `oci/` next to its `image.aci`."""
    return str(PurePosixPath(image.path).with_name(LAYOUT_DIR))


def stage(source: Source, image: ImageRef, where: Path) -> None:
    """Fetch and check the image's layout into `where/oci/` (a new directory); needs `image.oci`."""
    assert image.oci is not None
    layout = where / LAYOUT_DIR
    blobs = layout / "blobs" / "sha256"
    make_dirs(blobs, below=where)
    base = source_dir(image)

    def fetch(digest: str, size: int) -> Path:
        rel = f"{base}/{blob_rel(digest)}"
        dest = layout / blob_rel(digest)
        if not dest.exists():
            source.fetch(rel, dest, partial(Sha256Check, digest, source.describe(rel)), size)
        return dest

    # The manifest's size is pinned by nothing but its digest: read it whole, capped.
    manifest_rel = f"{base}/{blob_rel(image.oci)}"
    data = source.read_small(manifest_rel, MAX_SMALL_BLOB)
    check = Sha256Check(image.oci, source.describe(manifest_rel))
    check.update(data)
    check.finish()
    write_file(layout / blob_rel(image.oci), data)
    manifest = parse_manifest(data, source.describe(manifest_rel))
    for blob in manifest.blobs():
        fetch(blob["digest"], blob["size"])
    descriptor = {"mediaType": MEDIA_MANIFEST, "digest": image.oci, "size": len(data)}
    write_file(layout / LAYOUT_FILE, layout_bytes())
    write_file(layout / INDEX_FILE, index_bytes(descriptor, image.version))
    # The strict reader of the release side agrees that this is the layout: sizes, diff_ids.
    if manifest_digest(layout, image.version) != image.oci:
        raise ContractError(f"image {image.name}: the staged OCI layout does not tag {image.oci}")


def problem(image_dir: Path, image: ImageRef) -> str | None:
    """What is wrong with the installed layout of `image` (None: intact, or none is pinned)."""
    if image.oci is None:
        return None
    layout = image_dir / LAYOUT_DIR
    if not layout.is_dir():
        return "oci: missing (installed before OCI layouts)"
    try:
        got = manifest_digest(layout, image.version, check_layers=True)
    except ContractError as e:
        return f"oci: {e}"
    if got != image.oci:
        return f"oci: tags {got}, pod.json pins {image.oci}"
    return None
