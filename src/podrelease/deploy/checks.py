"""Checking what is installed: images against their ids, versions against their records.

`deploy` uses these to tell an intact installation (nothing to do) from a
damaged one (install it again); `verify` to list every problem under DIR,
OCI layouts included (`check_oci`; deploy checks those in ocilayout.py).
Each problem is one line; nothing here changes DIR.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core import signing
from ..core.errors import ContractError, IntegrityError, SignatureError
from ..core.hashing import AciIdCheck, check_sha512_file, short, verify_file
from ..core.oci import INDEX_FILE, LAYOUT_DIR, REF_NAME, manifest_digest
from ..core.signing import SIGNATURE_NAME
from .layout import CURRENT, RECORD, Layout, current, read_pod
from .records import diff_trees, read_record, scan_tree

MAX_SHA512_FILE = 1024


@dataclass
class ImageChecks:
    """Image verification results of one command: each image is hashed at most once."""

    results: dict[str, list[str]] = field(default_factory=dict)


def check_image(layout: Layout, image_id: str, checks: ImageChecks) -> list[str]:
    """What is wrong with the installed image `image_id`; [] if intact."""
    if image_id in checks.results:
        return checks.results[image_id]
    where = layout.image_dir(image_id)
    problems: list[str] = []
    if not where.is_dir():
        problems.append("missing")
    else:
        try:
            check_sha512_file((where / "sha512").read_bytes()[:MAX_SHA512_FILE], image_id, "sha512")
        except FileNotFoundError:
            problems.append("sha512: missing")
        except (IntegrityError, OSError) as e:
            problems.append(str(e))
        try:
            verify_file(where / "image.aci", AciIdCheck(image_id, "image.aci"))
        except FileNotFoundError:
            problems.append("image.aci: missing")
        except IntegrityError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"image.aci: {e.strerror}")
    checks.results[image_id] = problems
    return problems


def check_oci(image_dir: Path) -> list[str]:
    """What is wrong with an image's installed OCI layout, if it has one (every blob hashed)."""
    layout = image_dir / LAYOUT_DIR
    if not layout.is_dir():
        return []
    try:
        index = json.loads((layout / INDEX_FILE).read_bytes())
        tags = [m["annotations"][REF_NAME] for m in index["manifests"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{LAYOUT_DIR}/{INDEX_FILE}: missing or not an index tagging one manifest"]
    if len(tags) != 1 or not isinstance(tags[0], str):
        return [f"{LAYOUT_DIR}/{INDEX_FILE}: tags {len(tags)} manifests, expected one"]
    try:
        manifest_digest(layout, tags[0], check_layers=True)
    except ContractError as e:
        return [f"{LAYOUT_DIR}: {e}"]
    return []


def check_version(layout: Layout, vdir: Path, checks: ImageChecks) -> list[str]:
    """What is wrong with an installed version (its tree and its images); [] if intact."""
    record = read_record(vdir)
    if record is None:
        return [f"{RECORD}: missing or unreadable"]
    problems = diff_trees(record["tree"], scan_tree(vdir))
    for name, image_id in sorted(record.get("images", {}).items()):
        for problem in check_image(layout, image_id, checks):
            problems.append(f"image {name} ({short(image_id)}): {problem}")
    return problems


def verify(layout: Layout, signers: Path | None = None) -> list[str]:
    """Every problem with what is installed under an existing DIR, one line each; [] when all is intact.

    With `signers`, every installed version's pod.json.sig must verify with a key they allow for its channel."""
    problems: list[str] = []
    checks = ImageChecks()
    if layout.images.is_dir():
        for entry in sorted(os.listdir(layout.images)):
            if entry.startswith("."):
                continue
            for problem in check_image(layout, entry, checks) + check_oci(layout.image_dir(entry)):
                problems.append(f"images/{entry}: {problem}")
    # Walk pod directories and record-less versions too: a version whose record was
    # removed, or a `current` whose versions were, must not make verify blind.
    pod_dirs = set()
    for kind, vdir in layout.walk_pods():
        if kind == "pod":
            pod_dirs.add(vdir)
            continue
        label, version = layout.label_of(vdir)
        pod_dirs.add(vdir.parent)
        record = read_record(vdir)
        if record is None:
            problems.append(f"{label} {version}: {RECORD}: missing or unreadable")
            continue
        for problem in diff_trees(record["tree"], scan_tree(vdir)):
            problems.append(f"{label} {version}: {problem}")
        if signers is not None:
            problems += [f"{label} {version}: {problem}" for problem in _signature_problems(vdir, signers)]
        for name, image_id in sorted(record.get("images", {}).items()):
            if not layout.image_dir(image_id).is_dir():
                problems.append(f"{label} {version}: image {name} ({short(image_id)}): missing")
    for pod_dir in sorted(pod_dirs):
        points_to = current(pod_dir)
        label = layout.label_of_pod_dir(pod_dir)
        if points_to is None:
            if os.path.lexists(pod_dir / CURRENT):
                problems.append(f"{label}: current is not a symbolic link")
        # Only a version name of this pod directory counts (`/` would lead elsewhere).
        elif "/" in points_to or points_to.startswith(".") or not (pod_dir / points_to / RECORD).is_file():
            problems.append(f"{label}: current points to {points_to!r}, which is not installed")
    return problems


def _signature_problems(vdir: Path, signers: Path) -> list[str]:
    """Whether the installed pod.json.sig signs the installed pod.json for its channel, as `signers` allow."""
    pod = read_pod(vdir)
    if pod is None:
        return []  # the tree check says what is wrong with pod.json
    if not signing.signed_here(vdir):
        return [f"{SIGNATURE_NAME}: missing (installed unsigned, or without --allowed-signers)"]
    try:
        signature = signing.read_signature(vdir / SIGNATURE_NAME)
        signing.verify(pod.raw, signature, signers, pod.channel)
    except SignatureError as err:
        return [f"{SIGNATURE_NAME}: {err}"]
    return []
