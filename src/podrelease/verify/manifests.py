"""Each released pod's manifest against what its sources give: no edited exec or environment.

A pod's `manifest` is recomputed the way assembly computes it
(`build.assembly.pod_manifest`, the one place that knows how): one app per
image, named after it, running its id, taking the image's own app from the
built image (immutable; read from the head of its tar that hashing kept),
then the pod rule's args and environment, then the
channel parameters (the channel's defaults, then the instruction's). Any
difference is one problem, naming the first field that differs.

Released pods are immutable, but the pod rule and `channel.yaml` may change
afterwards (that changes new releases only). So a difference confined to
what those files decide (the args and environment an app gets on top of the
image's, its mounts, a volume's `readOnly`) is a warning when one of those
files is newer than `pod.json`, and an error otherwise; a difference
anywhere else (app names, image ids or labels, the image's own exec prefix,
user, group, ports...) is always an error: nothing but an edit of
`pod.json` explains it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..build import assembly
from ..core.errors import PodreleaseError
from ..core.names import quoted
from ..model.layout import POD_JSON
from ..model.plan import PodAssembly
from .images import read_manifest
from .report import ERROR, WARNING, Problems
from .scan import Scan

# What a later change of the pod rule or the channel file can explain (paths in an app / the manifest).
RULE_DECIDED = {("app", "exec"), ("app", "environment"), ("mounts",), ("volumes",)}


def check_manifest(scan: Scan, problems: Problems, pod: PodAssembly) -> None:
    """`pod.json`'s manifest is what its image, pod rule and channel parameters give."""
    instruction = pod.instruction
    home = scan.homes_by_folder.get(scan.root.pod_dir(instruction.channel, instruction.pod, instruction.version).parent)
    found = home.pod_dirs.get(instruction.version) if home else None
    if found is None or found.doc is None or instruction.yanked:
        return  # pending, unreadable (reported), or yanked
    doc = found.doc
    released = {(image.label, image.version): image.id for image in doc.images}
    ids, apps = {}, {}
    for build in pod.images:
        key = (build.rule.label, build.version)
        image = scan.images.get(key)
        if key not in released or image is None or image.broken:
            return  # the pod's images are reported elsewhere (agreement, links, images)
        # the image's manifest from the head of its tar, kept when it was hashed (scan.py)
        manifest = read_manifest(image.aci.head) if image.aci is not None else None
        if manifest is None or not isinstance(manifest.get("app", {}), dict):
            return  # an image whose manifest does not read is reported by the image checks
        ids[build.name] = released[key]
        apps[build.name] = manifest.get("app")
    try:
        expected = assembly.pod_manifest(pod, ids, apps)
    except PodreleaseError:
        return  # args without an exec: a release reports it
    differences = list(_differences(doc.manifest, expected))
    if not differences:
        return
    where, got, want = differences[0]
    rule_only = all(_rule_decided(path) for path, _, _ in differences)
    severity = WARNING if rule_only and _sources_newer(scan, pod, found.path / POD_JSON) else ERROR
    more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
    problems.report(
        "pod", found.path / POD_JSON,
        f"manifest.{_shown(where)} is {quoted(got)}, but its image, pod rule and channel parameters give "
        f"{quoted(want)}{more}" + ("; the pod rule or channel file changed since the release" if severity == WARNING else ""),
        severity,
    )


def _differences(got: object, want: object, path: tuple = ()):
    """(path, got, want) for each leaf where two JSON values differ; lists of apps by index."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in list(want) + [k for k in got if k not in want]:
            if got.get(key, _MISSING) != want.get(key, _MISSING):
                yield from _differences(got.get(key, _MISSING), want.get(key, _MISSING), (*path, key))
        return
    if path == ("apps",) and isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (one, other) in enumerate(zip(got, want, strict=True)):
            yield from _differences(one, other, (*path, i))
        return
    yield path, (None if got is _MISSING else got), (None if want is _MISSING else want)


_MISSING = object()


def _rule_decided(path: tuple) -> bool:
    inner = path[2:] if path[:1] == ("apps",) and len(path) > 2 else path
    return any(inner[: len(prefix)] == prefix for prefix in RULE_DECIDED)


def _shown(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _sources_newer(scan: Scan, pod: PodAssembly, pod_json: Path) -> bool:
    """Whether the pod rule's build file or the channel's file changed after pod.json was written."""
    try:
        released = os.stat(pod_json).st_mtime
    except OSError:
        return False
    for source in (pod.rule.build_file, scan.root.channel_file(pod.instruction.channel)):
        try:
            if os.stat(source).st_mtime > released:
                return True
        except OSError:
            continue
    return False
