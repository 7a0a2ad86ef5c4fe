"""`installed.json`, the record of one installed version, and what `list` shows.

A record holds every entry of its version directory (type, mode, sha512 or
link target, as `scan_tree` sees it) and the ids of the images the version
runs. It is written once, last, into the staged version; `verify`,
`undeploy` and `deploy` read it back, and check its shape first: it is a file
on disk anyone with access may have edited.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..core.fsops import write_file
from ..core.hashing import sha512_file, short
from ..core.names import Label, version_key
from ..core.podjson import PodJson, json_bytes
from .layout import RECORD, Layout, current, read_pod

RECORD_FORMAT = 1


@dataclass(frozen=True)
class Installed:
    """One installed pod version, as `list` shows it."""

    label: Label
    version: str
    path: Path
    current: bool
    pod: PodJson | None  # None when its pod.json no longer parses (`verify` says why)

    def to_json(self) -> dict:
        return {
            "label": str(self.label),
            "version": self.version,
            "current": self.current,
            "channel": self.pod.channel if self.pod else None,
            "revision": self.pod.revision if self.pod else None,
            "path": str(self.path),
            "images": [{"name": i.name, "id": i.id} for i in self.pod.images] if self.pod else [],
        }


def installed(layout: Layout) -> list[Installed]:
    """Every installed version, by label then version."""
    found = []
    for vdir in layout.version_dirs():
        label, version = layout.label_of(vdir)
        is_current = current(vdir.parent) == version
        found.append(Installed(label, version, vdir, is_current, read_pod(vdir)))
    found.sort(key=lambda i: (str(i.label), version_key(i.version)))
    return found


# -- the tree of a version directory -------------------------------------------


def _mode(st: os.stat_result) -> str:
    return format(stat.S_IMODE(st.st_mode), "04o")


def scan_tree(root: Path) -> dict[str, dict]:
    """Every entry below `root` (but the record itself): type, mode, content or link target."""
    tree: dict[str, dict] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel == RECORD:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = {"type": "link", "target": os.readlink(full)}
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = {"type": "dir", "mode": _mode(st)}
            elif stat.S_ISREG(st.st_mode):
                tree[rel] = {"type": "file", "mode": _mode(st), "sha512": sha512_file(Path(full))}
            else:
                tree[rel] = {"type": "other"}
    return tree


# The keys `scan_tree` writes for each type of entry (all strings).
_ENTRY_KEYS = {"file": ("mode", "sha512"), "dir": ("mode",), "link": ("target",), "other": ()}


def _is_tree_entry(entry: object) -> bool:
    """Whether a record's tree entry is one `scan_tree` could have written."""
    if not isinstance(entry, dict) or entry.get("type") not in _ENTRY_KEYS:
        return False
    return all(isinstance(entry.get(key), str) for key in _ENTRY_KEYS[entry["type"]])


def diff_trees(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """One line per difference between a recorded tree and a scanned one, in path order."""
    problems = []
    for rel in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(rel), actual.get(rel)
        if got is None:
            problems.append(f"{rel}: missing")
        elif want is None:
            problems.append(f"{rel}: unexpected {got['type']}")
        elif want["type"] != got["type"]:
            problems.append(f"{rel}: is a {got['type']}, expected a {want['type']}")
        elif want.get("sha512") != got.get("sha512"):
            problems.append(f"{rel}: content changed (sha512 {short(got['sha512'])}, installed {short(want['sha512'])})")
        elif want.get("target") != got.get("target"):
            problems.append(f"{rel}: link to {got['target']!r}, installed as {want['target']!r}")
        elif want.get("mode") != got.get("mode"):
            problems.append(f"{rel}: mode {got['mode']}, installed as {want['mode']}")
    return problems


# -- reading and writing a record ----------------------------------------------


def read_record(vdir: Path) -> dict | None:
    """The version's record, or None when it is missing, unreadable or not shaped as we write it.

    A record is a file on disk anyone with access may have edited: its shape is
    checked before `verify`, `undeploy` and `deploy` rely on it.
    """
    try:
        record = json.loads((vdir / RECORD).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    tree, images = record.get("tree"), record.get("images", {})
    if not isinstance(tree, dict) or not all(_is_tree_entry(entry) for entry in tree.values()):
        return None
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        return None
    return record


def write_record(vdir: Path, pod: PodJson) -> None:
    """Record `vdir` as it is now: the last file written into a staged version."""
    record = {
        "format": RECORD_FORMAT,
        "label": str(pod.label),
        "version": pod.version,
        "images": {image.name: image.id for image in pod.images},
        "tree": scan_tree(vdir),
    }
    write_file(vdir / RECORD, json_bytes(record))
