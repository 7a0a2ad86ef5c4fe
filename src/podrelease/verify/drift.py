"""Drift (warnings): images built from other inputs than their rules give now.

The newest built version of each image is compared with what its rule would
build now (`build.json` inputs: rule fields, every rootfs path with its mode
and sha256). A difference means the rule or its files changed while the
version stayed the same, so the change will never be released under that
version. Older versions are history and are not compared; nor is an image
that has a higher version planned but unbuilt (releasing it will build the
change). The inputs are computed in parallel, with the hashing (scan.py).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

from ..build import archive, imaging
from ..core.errors import UserError
from ..core.hashing import file_digest
from ..core.names import Label, version_key
from ..model import rules
from ..model.plan import ImageBuild, effective_rule
from .report import WARNING, Problems
from .scan import ImageDir, Scan

MAX_NAMED_CHANGES = 8  # changed inputs listed by name in one drift warning


def current_inputs(rule: rules.ImageRule, version: str) -> dict:
    """What `imaging.build_image` would record as `inputs` if it built `rule` now."""
    tree = imaging.rootfs_tree(rule)
    digests = {
        path: file_digest(cast(str, node.source), "sha256", nofollow=True)  # a file's source is set
        for path, node in tree.items() if node.kind == "file"
    }
    return imaging.build_record(rule, version, "0" * 128, tree, digests)["inputs"]


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Names of what differs between two `build.json` inputs, e.g. `rule.app.exec`, `file /opt/x`."""
    names: list[str] = []
    old_rule: dict = old["rule"] if isinstance(old.get("rule"), dict) else {}
    new_rule: dict = new.get("rule") or {}
    for key in sorted(set(old_rule) | set(new_rule)):
        before, after = old_rule.get(key), new_rule.get(key)
        if before == after:
            continue
        if key == "command":
            names.append("command")
        elif key == "app" and isinstance(before, dict) and isinstance(after, dict):
            names.extend(f"rule.app.{k}" for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k))
        else:
            names.append(f"rule.{key}")
    old_items = _by_path(old.get("rootfs"))
    new_items = _by_path(new.get("rootfs"))
    for path in sorted(set(old_items) | set(new_items), key=archive.sort_key):
        was, now = old_items.get(path), new_items.get(path)
        if was == now:
            continue
        kind = (now or was or {}).get("type", "path")
        if was is None:
            names.append(f"{kind} {path} (new)")
        elif now is None:
            names.append(f"{kind} {path} (gone)")
        elif was.get("type") != now.get("type"):
            names.append(f"{kind} {path} (was a {was.get('type')})")
        elif {k: v for k, v in was.items() if k != "mode"} == {k: v for k, v in now.items() if k != "mode"}:
            names.append(f"{kind} {path} (mode)")
        else:
            names.append(f"{kind} {path}")
    return names


def _by_path(items: object) -> dict[str, dict]:
    if not isinstance(items, list):
        return {}
    return {i["path"]: i for i in items if isinstance(i, dict) and isinstance(i.get("path"), str)}


@dataclass
class DriftJob:
    rule: rules.ImageRule
    image: ImageDir
    inputs: dict | None = None
    failure: str | None = None

    def compute(self) -> None:
        """What the rule gives now (run in parallel with the hashing)."""
        try:
            self.inputs = current_inputs(self.rule, self.image.version)
        except UserError as err:
            self.failure = f"its rule no longer builds: {err}"
        except OSError as err:
            self.failure = f"cannot read its sources: {err.filename}: {err.strerror}"


def drift_jobs(scan: Scan, build_files: list[rules.BuildFile], planned: list[ImageBuild]) -> list[DriftJob]:
    """The newest built version of each image that has a rule, unless a higher one is pending."""
    image_rules = {r.label: r for b in build_files for r in b.images.values()}
    built: dict[Label, list[str]] = defaultdict(list)
    for label, version in scan.images:
        built[label].append(version)
    pending: dict[Label, list[str]] = defaultdict(list)
    for build in planned:
        if (build.rule.label, build.version) not in scan.images:
            pending[build.rule.label].append(build.version)
    jobs = []
    for label, versions in sorted(built.items()):
        if label not in image_rules:
            continue  # a rule that is gone: its images are history
        try:
            rule = effective_rule(image_rules, label)  # with what it inherits from its base
        except UserError:
            continue  # a broken `from:` chain is reported by the plan
        newest = max(versions, key=version_key)
        if any(version_key(v) > version_key(newest) for v in pending[label]):
            continue
        jobs.append(DriftJob(rule, scan.images[(label, newest)]))
    return jobs


def report_drift(problems: Problems, job: DriftJob) -> None:
    image, rule = job.image, job.rule
    where = f"{rule.shown}:{rule.line}" if rule.line else rule.shown
    if job.failure:
        problems.report("drift", image.path, f"image {image.label} {image.version} cannot be compared with its rule ({where}): {job.failure}", WARNING)
        return
    record_path = image.path / imaging.BUILD_RECORD_FILE
    if image.record is None:
        if not os.path.lexists(record_path):
            problems.report("drift", image.path, f"no build.json: cannot tell whether image {image.label} {image.version} was built from its rule as it is now", WARNING)
        return
    stored = image.record.get("inputs")
    if stored == job.inputs:
        return
    changes = changed_inputs(stored, job.inputs or {}) if isinstance(stored, dict) else ["inputs"]
    if not changes:
        return
    named = ", ".join(changes[:MAX_NAMED_CHANGES])
    if len(changes) > MAX_NAMED_CHANGES:
        named += f" and {len(changes) - MAX_NAMED_CHANGES} more"
    problems.report(
        "drift", image.path,
        f"image {image.label} {image.version} was built from other inputs than its rule ({where}) gives now: "
        f"changed {named}; release the change under a new version",
        WARNING,
    )
