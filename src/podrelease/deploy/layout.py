"""Where things live under DIR, the installed-pod store of a machine (`ops-onboard --root`).

Layout (DIR is `--root`, `/var/lib/ops` by default)::

    DIR/.lock                                 flock(2): one ops-onboard at a time (never written)
    DIR/.tmp-*                                staging of a running command; a crashed one's is
                                              removed by the next command, under the lock
    DIR/images/<id>/image.aci                 an image, stored once by id (sha512-<hex>) and
    DIR/images/<id>/sha512                    shared by every pod version that runs it
    DIR/images/<id>/oci/                      its OCI image layout (when pod.json pins one):
                                              what podman runs (see ocilayout.py)
    DIR/data/<label_path>/<pod>/<volume>/     the writable copy of a `readOnly: false` volume,
                                              made once, kept across versions (see run.py)
    DIR/pods/<label_path>/<pod>/current       symlink -> <version>: the active version
    DIR/pods/<label_path>/<pod>/.history.json versions that were current before, oldest
                                              first: what `rollback` goes back to
    DIR/pods/<label_path>/<pod>/<version>/    one installed version, immutable:
        pod.json                              as released, byte for byte
        pod.json.sig                          its signature, when deployed with --allowed-signers
        pod-manifest.json                     the appc pod manifest, each host volume's
                                              `source` set to the absolute path of ...
        volumes/<volume>/                     ... the volume's files, tarballs extracted
        images/<image>                        symlink -> ../../(...)/images/<id>
        files/<file>                          the pod's files
        installed.json                        what was installed: every entry of this
                                              directory (type, mode, sha512 or link target)
                                              and the image ids; `verify` compares with it

This module names those places and reads the tree (which versions exist,
which is current); it changes nothing but its two small writers, used by the
modules that do.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ContractError
from ..core.fsops import TMP_PREFIX
from ..core.names import Label, version_key
from ..core.podjson import PodJson, read_pod_json

CURRENT = "current"
HISTORY = ".history.json"
RECORD = "installed.json"
POD_MANIFEST = "pod-manifest.json"


@dataclass(frozen=True)
class Layout:
    """The places under one DIR (an absolute path) and the walk of its pods/."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    def image_dir(self, image_id: str) -> Path:
        return self.images / image_id

    def pod_dir(self, label: Label) -> Path:
        return self.pods / label.join()

    def version_dir(self, label: Label, version: str) -> Path:
        return self.pod_dir(label) / version

    def staging(self, what: str) -> Path:
        """A new private directory for a command's work, on DIR's filesystem."""
        # `.tmp-<what>-<pid>-<random>`: the naming `fsops.sweep` reads the owner's pid from
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{what}-{os.getpid()}-", dir=self.root))

    def walk_pods(self) -> Iterator[tuple[str, Path]]:
        """What lies under pods/, in path order, as (kind, path):

        - "version": an installed version directory (it holds a record);
        - "unrecorded": a version directory whose record is gone (it holds a pod.json);
        - "pod": a pod directory (it holds a `current` entry).
        """
        if not self.pods.is_dir():
            return
        for dirpath, dirs, files in os.walk(self.pods):
            depth = len(Path(dirpath).relative_to(self.pods).parts)  # a version is <pod>/<version> or deeper
            if depth >= 2 and RECORD in files:
                dirs[:] = []
                yield "version", Path(dirpath)
                continue
            if depth >= 2 and "pod.json" in files:
                dirs[:] = []
                yield "unrecorded", Path(dirpath)
                continue
            if depth >= 1 and os.path.lexists(os.path.join(dirpath, CURRENT)):
                yield "pod", Path(dirpath)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and not os.path.islink(os.path.join(dirpath, d)))

    def version_dirs(self) -> Iterator[Path]:
        """Every installed version directory (it holds a record), in path order."""
        return (path for kind, path in self.walk_pods() if kind == "version")

    def label_of(self, vdir: Path) -> tuple[Label, str]:
        """The label and version a version directory belongs to, from its path."""
        return self.label_of_pod_dir(vdir.parent), vdir.name

    def label_of_pod_dir(self, pod_dir: Path) -> Label:
        parts = pod_dir.relative_to(self.pods).parts
        return Label("/".join(parts[:-1]), parts[-1])

    def versions_of(self, label: Label) -> list[str]:
        """The installed versions of a pod (those with a record), oldest first."""
        pod_dir = self.pod_dir(label)
        if not pod_dir.is_dir():
            return []
        versions = [e.name for e in os.scandir(pod_dir)
                    if not e.name.startswith(".") and e.name != CURRENT and (Path(e.path) / RECORD).is_file()]
        return sorted(versions, key=version_key)


def current(pod_dir: Path) -> str | None:
    """The version `current` names, or None when it is missing or not a symbolic link."""
    try:
        return os.readlink(pod_dir / CURRENT)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None


def read_pod(vdir: Path) -> PodJson | None:
    """A version's pod.json, or None when it no longer parses."""
    try:
        return read_pod_json(vdir / "pod.json")
    except ContractError:
        return None


# -- the two ways files under DIR are written ----------------------------------


