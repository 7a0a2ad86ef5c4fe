"""This root against its registry: what it released is what the registry holds.

With a registry (`podrelease.yaml`'s `registry:`, or `PODRELEASE_REGISTRY`),
every image and pod version on disk belongs in the registry under its
version's tag, with the same digest: the OCI manifest for an image (with
its ACI companion beside it), the artifact `doit` pushes for a pod.

- A version the registry lacks is a warning: the next `doit` pushes it.
- A version the registry holds with another digest is an error. Version
  tags never change, so either the tag was overwritten, or another root
  released different content under that version; `doit` refuses to push
  over it, and a runner restoring it refuses what it gets.
- A registry that cannot be asked is one error, and nothing more is
  checked there.

Volumes are not compared: that would read every volume file again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..build.publishing import Publisher, open_publisher
from ..core.errors import RegistryError, UserError
from ..core.names import Label
from ..core.signing import signed_here
from ..model.settings import registry_setting
from .report import WARNING, Problems
from .scan import ImageDir, PodDir, Scan

PARALLEL_READS = 8


def open_registry(found: Scan, problems: Problems) -> Publisher | None:
    """The root's registry, or None without one (a bad setting is reported)."""
    try:
        setting = registry_setting(found.root.path)
        return open_publisher(found.root, setting) if setting is not None else None
    except UserError as err:
        problems.report_error("registry", err)
        return None


def check_published(found: Scan, problems: Problems, publisher: Publisher) -> None:
    """Every image and pod version on disk is in the registry, as it is here."""
    images = [image for image in found.images.values() if not image.broken and image.oci is not None]
    pods = [(home, home.label, pod) for home, pod in found.pods() if pod.doc is not None and home.label is not None]
    try:
        publisher.prefetch(images=[(image.label, image.version) for image in images],
                           pods=[(home.channel, label) for home, label, _ in pods])
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            held_images = list(pool.map(lambda image: publisher.published_image(image.label, image.version), images))
            held_pods = list(pool.map(lambda each: publisher.published_pod(each[0].channel, each[1], each[2].version), pods))
        signed_there = [publisher.has_signature(home.channel, label, pod.version) for home, label, pod in pods]
    except (RegistryError, UserError) as err:
        problems.report("registry", str(publisher.registry), f"cannot be checked: {err}")
        return
    # what doit pushes: pods not yanked, and the images they name (bases are pushed too, but no pod.json names them)
    pushed = {(home.channel, label, pod.version) for home, label, pod in pods if pod.version not in home.yanked}
    named = {(image.label, image.version) for home, label, pod in pods
             if pod.doc is not None and (home.channel, label, pod.version) in pushed for image in pod.doc.images}
    for image, held in zip(images, held_images, strict=True):
        if held is not None or (image.label, image.version) in named:
            _check_image(problems, publisher, image, held)
    for (home, label, pod), held, signature in zip(pods, held_pods, signed_there, strict=True):
        if held is not None or (home.channel, label, pod.version) in pushed:
            _check_pod(problems, publisher, home.channel, label, pod, held, signature)


def _check_image(problems: Problems, publisher: Publisher, image: ImageDir, held: str | None) -> None:
    where = publisher.image_reference(image.label, image.version)
    if held is None:
        problems.report("registry", image.path, f"not in the registry yet ({where}): the next doit pushes it",
                        severity=WARNING)
    elif held != image.oci:
        problems.report("registry", image.path, f"the registry holds {held} under {where}, this image is {image.oci}: "
                        "the tag was overwritten, or another root released other content under this version")
    elif not publisher.has_companion(image.label, held):
        problems.report("registry", image.path, f"the registry holds {where} without its ACI companion: "
                        "a runner cannot restore image.aci from it")


def _check_pod(problems: Problems, publisher: Publisher, channel: str, label: Label, pod: PodDir, held: str | None,
               signature_there: bool) -> None:
    where = publisher.pod_reference(channel, label, pod.version)
    if held is None:
        problems.report("registry", pod.path, f"not in the registry yet ({where}): the next doit pushes it",
                        severity=WARNING)
        return
    local = publisher.pod_digests(channel, label, pod.version)
    if held not in local:
        problems.report("registry", pod.path, f"the registry holds {held} under {where}, this pod is {local[0]}: "
                        "the tag was overwritten, or another root released other content under this version")
    elif signed_here(pod.path) and not signature_there:
        problems.report("registry", pod.path, f"its signature is not in the registry yet ({where}): the next doit pushes it",
                        severity=WARNING)
