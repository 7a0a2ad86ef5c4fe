"""A pod from a registry: `oci://<registry>/<prefix>/channels/<channel>/<label_path>/<pod>:<version|tip>`.

The pod's artifact (pod.json, its signature, its files; a signature
added after the push comes from its own tag), then each image
(the OCI image by the digest pod.json pins, and its ACI companion) and each
volume, are pulled with skopeo into the deploy's private staging directory,
laid out exactly as a bundle. From there the deploy goes on as for a bundle
tarball: every byte is checked against pod.json before anything is
installed, and the files are moved, not copied, into place.

Images are pulled by digest, never by tag: a tag moved behind our back
cannot change what a pod.json pins. Each pull is bounded before it starts,
by the sizes its manifest declares: the pod artifact by a fixed cap, an
image's ACI companion by the image.aci size pod.json pins, a volume by the
sizes of its files in pod.json. (The OCI image itself is the one its pinned
digest names.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..core import oci
from ..core.errors import ContractError, FetchError, PodreleaseError
from ..core.podjson import MAX_POD_JSON, parse_pod_json
from ..core.signing import SIGNATURE_NAME
from ..registry.references import TIP_TAG, parse_pod_reference, tag_of
from ..registry.store import POD_TYPE, VOLUME_TYPE, RegistryStore
from .sources import DirSource

MAX_POD_ARTIFACT = 64 << 20  # pod.json, its signature and its small files


def pull_bundle(url: str, staging: Path) -> DirSource:
    """The pod `url` names, as a bundle directory below `staging`."""
    try:
        reference = parse_pod_reference(url)
    except ValueError as err:
        raise ContractError(str(err)) from None
    store = RegistryStore(reference.registry)
    bundle = staging / "bundle"
    bundle.mkdir()
    try:
        if reference.tag == TIP_TAG and store.tip_withdrawn(reference.repository):
            raise FetchError(f"{url}: every version of this pod is yanked: there is no tip to deploy")
        store.fetch_files(f"{reference.repository}:{reference.tag}", bundle, POD_TYPE, MAX_POD_ARTIFACT)
        pod = parse_pod_json((bundle / "pod.json").read_bytes()[: MAX_POD_JSON + 1], f"{url} pod.json")
        if reference.tag not in ("tip", tag_of(pod.version)):
            raise FetchError(f"{url}: holds version {pod.version}, not {reference.tag}")
        if not (bundle / SIGNATURE_NAME).exists():  # signed after it was pushed, perhaps
            store.fetch_signature(reference.repository, pod.version, bundle)
        for image in pod.images:
            if image.oci is None:
                raise FetchError(f"{url}: image {image.name} has no OCI digest in pod.json, so it cannot come from a registry")
            restored = staging / "images" / image.name
            restored.parent.mkdir(exist_ok=True)
            store.restore_image(reference.registry.image(image.label.path, image.label.name), image.version, restored,
                                image.oci, image.aci.size)
            where = bundle / Path(image.path).parent
            where.mkdir(parents=True, exist_ok=True)
            shutil.move(restored / "image.aci", bundle / image.path)
            shutil.move(restored / "sha512", bundle / image.sha512_path)
            shutil.move(restored / oci.LAYOUT_DIR / "blobs", where / oci.LAYOUT_DIR / "blobs")
        for volume in pod.volumes:
            repository = reference.registry.volume(volume.label.path, volume.label.name)
            store.fetch_files(f"{repository}:{tag_of(volume.version)}", bundle / volume.name, VOLUME_TYPE,
                              sum(f.size for f in volume.files))
    except (PodreleaseError, OSError, ValueError) as err:
        if isinstance(err, PodreleaseError):
            raise
        raise FetchError(f"{url}: {err}") from None
    return DirSource(bundle, url, move=True)
