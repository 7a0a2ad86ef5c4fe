"""`doit verify`: check a release root's artifacts against themselves and their sources.

Reads only; never repairs. Every problem found becomes one `Problem`, shown
as `path[:line]: message` with the path relative to the release root; one
fault is one line (report.py).

`verify` is a pipeline of small steps, each in its own module:

- scan (scan.py): find the images and the pod homes, read each `pod.json`
  (pods.py);
- load (sources.py): build files, channel defaults and instructions, and
  the plan a release would make;
- hash (scan.py, drift.py): every image and volume file once, and what each
  image's rule gives now, in parallel threads;
- check: images (images.py), pod directories (pods.py), tips (tips.py),
  instructions against their pod directories (agreement.py), pending
  instructions that cannot be released and released versions whose
  instruction was deleted (pending.py), each pod's manifest against what its
  image, pod rule and channel parameters give (manifests.py), drift
  (drift.py), and with allowed
  signers each pod's signature (signatures.py, on the hashing threads);
- with a registry, compare each image and pod version with what the
  registry holds under its tag (published.py);
- sort the problems by path.
"""

from __future__ import annotations

from pathlib import Path

from ..build import archive
from ..model.layout import ReleaseRoot
from . import agreement, drift, images, manifests, pending, pods, published, scan, signatures, sources, tips
from .report import Problem, Problems, Report

__all__ = ["Problem", "Report", "verify"]


def verify(root: ReleaseRoot, workers: int | None = None, allowed_signers: Path | None = None) -> Report:
    """Check everything under `root`; return every problem, sorted by path.

    With `allowed_signers`, every pod must be signed by a key it allows for the pod's channel."""
    problems = Problems(root)
    found = scan.Scan(root)

    scan.find_images(found, problems)
    scan.find_pod_homes(found, problems)
    for home, pod in found.pods():
        pods.read_pod(found, problems, home, pod)

    build_files, build_errors = sources.load_build_files(found, problems)
    defaults, default_errors = sources.load_channel_defaults(found, problems)
    loaded = sources.load_instructions(found, problems)
    planned = sources.plan(problems, build_files, loaded, defaults, build_errors or default_errors)

    drift_jobs = drift.drift_jobs(found, build_files, sources.builds(planned))
    signature_checks = signatures.signature_jobs(found, allowed_signers)
    scan.run_in_parallel(scan.hash_jobs(found) + [job.compute for job in drift_jobs] + signatures.jobs(signature_checks),
                         workers or archive.default_workers())

    for image in found.images.values():
        images.check_image(problems, image)  # first: a broken image is not blamed on its pods
    for _, pod in found.pods():
        pods.check_pod_links(found, problems, pod)
    for home in found.homes:
        tips.check_tip(found, problems, home)
    for instruction in loaded:
        agreement.check_agreement(found, problems, instruction)
    for assembly in planned:
        pending.check_pending(found, problems, assembly)
        manifests.check_manifest(found, problems, assembly)
    for home in found.homes:
        pending.check_without_instruction(found, problems, home)
    for job in drift_jobs:
        drift.report_drift(problems, job)
    signatures.report_signatures(problems, signature_checks)
    publisher = published.open_registry(found, problems)
    if publisher is not None:
        published.check_published(found, problems, publisher)

    return Report(problems.sorted(), found.checked)
