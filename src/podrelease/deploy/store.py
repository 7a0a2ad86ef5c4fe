"""The installed-pod store of a machine: what `ops-onboard` manages under DIR.

Layout (DIR is `--root`, `/var/lib/ops` by default)::

    DIR/.lock                                 flock(2): one ops-onboard at a time (never written)
    DIR/.tmp-*                                staging of a running command; a crashed one's is
                                              removed by the next command, under the lock
    DIR/images/<id>/image.aci                 an image, stored once by id (sha512-<hex>) and
    DIR/images/<id>/sha512                    shared by every pod version that runs it
    DIR/pods/<label_path>/<pod>/current       symlink -> <version>: the active version
    DIR/pods/<label_path>/<pod>/.history.json versions that were current before, oldest
                                              first: what `rollback` goes back to
    DIR/pods/<label_path>/<pod>/<version>/    one installed version, immutable:
        pod.json                              as released, byte for byte
        pod-manifest.json                     the appc pod manifest, each host volume's
                                              `source` set to the absolute path of ...
        volumes/<volume>/                     ... the volume's files, tarballs extracted
        images/<image>                        symlink -> ../../(...)/images/<id>
        files/<file>                          the pod's files
        installed.json                        what was installed: every entry of this
                                              directory (type, mode, sha512 or link target)
                                              and the image ids; `verify` compares with it

How a deploy stays invisible until it is complete: everything is fetched,
checked and extracted inside `DIR/.tmp-deploy-*` (same filesystem); only then
are new image directories and the version directory renamed into place and
`current` replaced by a new symlink renamed over it. A failure before or
during those renames undoes the ones done, so DIR is left as it was; a crash
leaves at worst an unused image or a version that is not current, both
consistent (a crash between a rename and its fsync loses nothing that was
visible before).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterator

from ..core.fsops import TMP_PREFIX, make_dirs, fsync_dir, fsync_tree, replace_symlink, sweep
from ..core.locks import exclusive
from ..core.hashing import (AciIdCheck, RecordingCheck, Sha512Check, check_sha512_file, sha512_file,
                        short, verify_file)
from ..core.names import Label, version_key
from ..core.errors import IntegrityError, ContractError
from ..core.podjson import MAX_POD_JSON, PodJson, manifest_with_sources, parse_pod_json, read_pod_json
from ..core.safetar import extract
from .sources import TAR_SUFFIXES, open_source

if TYPE_CHECKING:
    from .fetching import HttpOptions

CURRENT = "current"
HISTORY = ".history.json"
RECORD = "installed.json"
POD_MANIFEST = "pod-manifest.json"
MAX_SHA512_FILE = 1024
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


@dataclass
class _ImageChecks:
    """Image verification results of one command: each image is hashed at most once."""

    results: dict[str, list[str]] = field(default_factory=dict)


def _json_bytes(doc: object) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        os.fchmod(out.fileno(), mode)


def _make_dirs(top: Path, parts: tuple[str, ...]) -> Path:
    """`top/parts...`, never through a symbolic link below `top` (see `fsops.make_dirs`)."""
    path = top.joinpath(*parts)
    make_dirs(path, below=top)
    return path


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


def is_tarball(name: str) -> bool:
    return name.endswith(TAR_SUFFIXES)


class Store:
    """The pods installed under one DIR; every public method takes the lock."""

    def __init__(self, root: Path, lock_timeout: float = 300.0, http: HttpOptions | None = None,
                 say: Callable[[str], None] = lambda message: None):
        self.root = Path(os.path.abspath(root))
        self.lock_timeout = lock_timeout
        self.http = http
        self.say = say

    # -- paths -------------------------------------------------------------

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

    # -- locking -----------------------------------------------------------

    @contextmanager
    def locked(self, create: bool = True) -> Iterator[bool]:
        """Hold DIR's lock; yields False (without locking) if DIR does not exist and `create` is off."""
        if not self.root.is_dir():
            if os.path.lexists(self.root):
                # A file (or a dangling link) is not an empty store: `verify` must not call it intact.
                raise ContractError(f"{self.root} is not a directory")
            if not create:
                yield False
                return
            try:
                self.root.mkdir(parents=True, mode=0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise ContractError(f"cannot create {self.root}: {e.strerror}") from None
        with exclusive(self.root / ".lock", self.lock_timeout, self.say):
            try:
                sweep(self.root)  # what a killed command left; only lock holders create them
            except OSError:
                pass  # a reader without write access: the next writer sweeps
            yield True

    def _staging(self, what: str) -> Path:
        # `.tmp-<what>-<pid>-<random>`: the naming `atomic.sweep` reads the owner's pid from
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{what}-{os.getpid()}-", dir=self.root))

    # -- reading the store -------------------------------------------------

    def _walk_pods(self) -> Iterator[tuple[str, Path]]:
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

    def _version_dirs(self) -> Iterator[Path]:
        """Every installed version directory (it holds a record), in path order."""
        return (path for kind, path in self._walk_pods() if kind == "version")

    def _label_of(self, vdir: Path) -> tuple[Label, str]:
        """The label and version a version directory belongs to, from its path."""
        return self._label_of_pod_dir(vdir.parent), vdir.name

    def _label_of_pod_dir(self, pod_dir: Path) -> Label:
        parts = pod_dir.relative_to(self.pods).parts
        return Label("/".join(parts[:-1]), parts[-1])

    def _current(self, pod_dir: Path) -> str | None:
        try:
            return os.readlink(pod_dir / CURRENT)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return None

    def _is_installed(self, label: Label, version: str) -> bool:
        return (self.version_dir(label, version) / RECORD).is_file()

    def _read_pod(self, vdir: Path) -> PodJson | None:
        try:
            return read_pod_json(vdir / "pod.json")
        except ContractError:
            return None

    def _read_record(self, vdir: Path) -> dict | None:
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

    def _installed(self) -> list[Installed]:
        found = []
        for vdir in self._version_dirs():
            label, version = self._label_of(vdir)
            current = self._current(vdir.parent) == version
            found.append(Installed(label, version, vdir, current, self._read_pod(vdir)))
        found.sort(key=lambda i: (str(i.label), version_key(i.version)))
        return found

    def _versions_of(self, label: Label) -> list[str]:
        pod_dir = self.pod_dir(label)
        if not pod_dir.is_dir():
            return []
        versions = [e.name for e in os.scandir(pod_dir)
                    if not e.name.startswith(".") and e.name != CURRENT and (Path(e.path) / RECORD).is_file()]
        return sorted(versions, key=version_key)

    def _require_installed(self, label: Label, version: str | None = None) -> list[str]:
        versions = self._versions_of(label)
        if not versions:
            raise ContractError(f"{label} is not installed under {self.root}")
        if version is not None and version not in versions:
            raise ContractError(f"{label} has no installed version {version!r} (installed: {', '.join(versions)})")
        return versions

    # -- checks ------------------------------------------------------------

    def _check_image(self, image_id: str, checks: _ImageChecks) -> list[str]:
        if image_id in checks.results:
            return checks.results[image_id]
        where = self.image_dir(image_id)
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

    def _check_version(self, vdir: Path, checks: _ImageChecks) -> list[str]:
        """What is wrong with an installed version (its tree and its images); [] if intact."""
        record = self._read_record(vdir)
        if record is None:
            return [f"{RECORD}: missing or unreadable"]
        problems = diff_trees(record["tree"], scan_tree(vdir))
        for name, image_id in sorted(record.get("images", {}).items()):
            for problem in self._check_image(image_id, checks):
                problems.append(f"image {name} ({short(image_id)}): {problem}")
        return problems

    def _check_no_conflict(self, label: Label, version: str) -> None:
        """The pod's directories must not be (inside) another pod's version or link."""
        final = self.version_dir(label, version)
        path = self.pods
        for part in final.relative_to(self.pods).parts[:-1]:
            path = path / part
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise ContractError(f"{label} {version}: {path} is in the way (not a directory)")
            if (path / RECORD).exists():
                other, other_version = self._label_of(path)
                raise ContractError(f"{label} {version}: would be installed inside {other} {other_version} ({path})")
        current = final.parent / CURRENT
        if current.exists() and not current.is_symlink():
            raise ContractError(f"{label} {version}: {current} is in the way (a directory, not the current link)")
        if final.exists() and not (final / RECORD).is_file():
            raise ContractError(f"{label} {version}: {final} is in the way (it is not an installed version)")

    # -- history and current -----------------------------------------------

    def _history(self, pod_dir: Path) -> list[str]:
        try:
            history = json.loads((pod_dir / HISTORY).read_bytes())
        except (OSError, ValueError):
            return []
        return [v for v in history if isinstance(v, str)] if isinstance(history, list) else []

    def _write_history(self, pod_dir: Path, history: list[str]) -> None:
        path = pod_dir / HISTORY
        if not history:
            path.unlink(missing_ok=True)
            return
        tmp = pod_dir / f"{TMP_PREFIX}history-{os.getpid()}-{os.urandom(4).hex()}"
        _write_new(tmp, _json_bytes(history))
        os.replace(tmp, path)

    def _point_current(self, pod_dir: Path, version: str, push: bool = True) -> str | None:
        """Make `version` current; the previous current goes on the history unless `push` is off."""
        old = self._current(pod_dir)
        if old == version:
            return old
        saved = self._history(pod_dir)
        history = [v for v in saved if v != version]
        if push and old is not None:
            history = [v for v in history if v != old] + [old]
        self._write_history(pod_dir, history)
        try:
            replace_symlink(pod_dir / CURRENT, version)
        except BaseException:
            self._write_history(pod_dir, saved)
            raise
        return old

    # -- deploy ------------------------------------------------------------

    def deploy(self, spec: str) -> str:
        """Install the pod `spec` names and make it current; returns what was done."""
        with self.locked():
            staging = self._staging("deploy")
            try:
                return self._deploy(spec, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _deploy(self, spec: str, staging: Path) -> str:
        source = open_source(spec, staging, self.http)
        raw = source.read_pod_json(MAX_POD_JSON)
        pod = parse_pod_json(raw, source.describe("pod.json"))
        label, version = pod.label, pod.version
        if version == CURRENT:
            raise ContractError(f"{source.describe('pod.json')}: version 'current' is reserved by ops-onboard "
                               "(DIR/pods/<label_path>/<pod>/current names the active version)")
        final = self.version_dir(label, version)
        self._check_no_conflict(label, version)
        checks = _ImageChecks()
        repair = False
        if (final / RECORD).is_file():
            try:
                installed_raw = (final / "pod.json").read_bytes()
            except OSError:
                installed_raw = None
            if installed_raw is not None and installed_raw != raw:
                raise ContractError(
                    f"{label} {version} is already installed from a different pod.json; "
                    "undeploy it first, or release a new version"
                )
            problems = self._check_version(final, checks)
            if not problems:
                if self._current(final.parent) is None:
                    self._point_current(final.parent, version)
                    return f"{label} {version} is already installed and intact; it is now current"
                return f"{label} {version} is already installed and intact; nothing to do"
            self.say(f"{label} {version} is installed but damaged ({problems[0]}); installing it again")
            repair = True

        new_images = self._stage_images(pod, source, staging, checks)
        vstage = self._stage_version(pod, source, staging, final)
        for image_dir in new_images.values():
            fsync_tree(image_dir)
        fsync_tree(vstage)
        self._commit(pod, final, vstage, new_images, staging, repair)
        reused = len({i.id for i in pod.images}) - len(new_images)
        note = f" ({reused} image{'s' if reused != 1 else ''} already installed)" if reused else ""
        return f"deployed {label} {version} to {final}{note}; it is now current"

    def _stage_images(self, pod: PodJson, source, staging: Path, checks: _ImageChecks) -> dict[str, Path]:
        """Fetch and check every image not already installed intact; id -> staged directory."""
        staged: dict[str, Path] = {}
        for image in pod.images:
            if image.id in staged:
                continue
            if self.image_dir(image.id).is_dir():
                damage = self._check_image(image.id, checks)
                if not damage:
                    continue
                self.say(f"installed image {short(image.id)} is damaged ({damage[0]}); fetching it again")
            where = _make_dirs(staging, ("images", image.id))
            sha512_text = source.read_small(image.sha512_path, MAX_SHA512_FILE)
            check_sha512_file(sha512_text, image.id, source.describe(image.sha512_path))
            _write_new(where / "sha512", (image.digest + "\n").encode())
            shown = source.describe(image.path)
            source.fetch(image.path, where / "image.aci", lambda: AciIdCheck(image.id, shown))
            staged[image.id] = where
        return staged

    def _stage_version(self, pod: PodJson, source, staging: Path, final: Path) -> Path:
        vstage = _make_dirs(staging, ("version",))
        _write_new(vstage / "pod.json", pod.raw)

        if pod.images:
            links = _make_dirs(vstage, ("images",))
            for image in pod.images:
                target = os.path.relpath(self.image_dir(image.id), final / "images")
                os.symlink(target, links / image.name)

        downloads = staging / "downloads"
        downloads.mkdir()
        sources: dict[str, str] = {}
        for volume in pod.volumes:
            vdir = _make_dirs(vstage, ("volumes", volume.name))
            for n, vfile in enumerate(volume.files):
                shown = source.describe(vfile.path)
                download = downloads / f"{volume.name}-{n}"
                source.fetch(vfile.path, download, lambda: Sha512Check(vfile.sha512, shown))
                inner = PurePosixPath(vfile.inner)
                try:
                    into = _make_dirs(vdir, inner.parent.parts)
                except ContractError as e:
                    raise ContractError(f"{shown}: cannot be placed in volume {volume.name}: {e}") from None
                if is_tarball(inner.name):
                    # Links must stay inside the whole volume, not only inside `into`: links
                    # of two tarballs can together climb out of it.
                    extract(download, into, shown, audit_root=vdir)
                    download.unlink()
                else:
                    dest = into / inner.name
                    if os.path.lexists(dest):
                        raise ContractError(f"{shown}: volume {volume.name} already has {vfile.inner}")
                    os.rename(download, dest)
            sources[volume.name] = str(final / "volumes" / volume.name)

        for name in pod.files:
            parts = PurePosixPath(name).parts
            dest = _make_dirs(vstage, ("files", *parts[:-1])) / parts[-1]
            source.fetch(name, dest, RecordingCheck)

        _write_new(vstage / POD_MANIFEST, _json_bytes(manifest_with_sources(pod, sources)))
        record = {
            "format": RECORD_FORMAT,
            "label": str(pod.label),
            "version": pod.version,
            "images": {image.name: image.id for image in pod.images},
            "tree": scan_tree(vstage),
        }
        _write_new(vstage / RECORD, _json_bytes(record))
        return vstage

    def _commit(self, pod: PodJson, final: Path, vstage: Path, new_images: dict[str, Path],
                staging: Path, repair: bool) -> None:
        undo: list[Callable[[], None]] = []
        try:
            for created in make_dirs(self.images):
                undo.append(lambda p=created: p.rmdir())
            for image_id, staged in new_images.items():
                target = self.image_dir(image_id)
                if target.exists():  # damaged: replace it
                    aside = staging / f"replaced-{image_id}"
                    os.rename(target, aside)
                    undo.append(lambda a=aside, t=target: os.rename(a, t))
                os.rename(staged, target)
                undo.append(lambda s=staged, t=target: os.rename(t, s))
            if new_images:
                fsync_dir(self.images)
            for created in make_dirs(final.parent):
                undo.append(lambda p=created: p.rmdir())
            sweep(final.parent)
            if repair:
                aside = staging / "replaced-version"
                os.rename(final, aside)
                undo.append(lambda a=aside: os.rename(a, final))
            os.rename(vstage, final)
            undo.append(lambda: os.rename(final, vstage))
            fsync_dir(final.parent)
            self._point_current(final.parent, pod.version)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except OSError:
                    pass
            raise

    # -- the other commands --------------------------------------------------

    def installed(self) -> list[Installed]:
        with self.locked(create=False) as exists:
            return self._installed() if exists else []

    def activate(self, label: Label, version: str) -> str:
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            self._require_installed(label, version)
            old = self._point_current(self.pod_dir(label), version)
            if old == version:
                return f"{label} {version} is already current"
            return f"{label}: current is now {version}" + (f" (was {old})" if old else "")

    def rollback(self, label: Label) -> str:
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            versions = self._require_installed(label)
            pod_dir = self.pod_dir(label)
            current = self._current(pod_dir)
            history = self._history(pod_dir)
            while history:
                candidate = history.pop()
                if candidate != current and candidate in versions:
                    self._write_history(pod_dir, history + [candidate])
                    self._point_current(pod_dir, candidate, push=False)
                    return f"{label}: rolled back to {candidate}" + (f" (was {current})" if current else "")
            raise ContractError(f"{label}: no earlier version to roll back to (current: {current or 'none'})")

    def undeploy(self, label: Label, version: str, force: bool = False) -> str:
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            self._require_installed(label, version)
            pod_dir = self.pod_dir(label)
            final = pod_dir / version
            is_current = self._current(pod_dir) == version
            if is_current and not force:
                raise ContractError(
                    f"{label} {version} is the current version; activate another one first, or use --force"
                )
            record = self._read_record(final) or {}
            ids = set(record.get("images", {}).values())
            pod = self._read_pod(final)
            if pod is not None:
                ids |= {i.id for i in pod.images}
            staging = self._staging("undeploy")
            try:
                if is_current:
                    (pod_dir / CURRENT).unlink()
                os.rename(final, staging / "version")
                self._write_history(pod_dir, [v for v in self._history(pod_dir) if v != version])
                fsync_dir(pod_dir)
                removed = self._drop_unused_images(ids, staging)
                self._prune(pod_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            message = f"undeployed {label} {version}"
            if removed:
                message += f" and {len(removed)} image{'s' if len(removed) != 1 else ''} no other pod uses"
            if is_current:
                message += f"; {label} has no current version now"
            return message

    def _drop_unused_images(self, candidates: set[str], staging: Path) -> list[str]:
        used: set[str] = set()
        for vdir in self._version_dirs():
            record = self._read_record(vdir)
            pod = self._read_pod(vdir)
            if record is None and pod is None:
                self.say(f"cannot tell which images {vdir} uses; keeping every image")
                return []
            if record is not None:
                used |= set(record.get("images", {}).values())
            if pod is not None:
                used |= {i.id for i in pod.images}
        removed = []
        for image_id in sorted(candidates - used):
            target = self.image_dir(image_id)
            if target.is_dir():
                os.rename(target, staging / image_id)
                removed.append(image_id)
        if removed:
            fsync_dir(self.images)
        return removed

    def _prune(self, pod_dir: Path) -> None:
        """Remove a pod's directory once no version is left, and empty parents up to pods/."""
        if self._versions_of_dir(pod_dir):
            return
        sweep(pod_dir)
        (pod_dir / HISTORY).unlink(missing_ok=True)
        path = pod_dir
        while path != self.pods and path != self.root:
            try:
                path.rmdir()
            except OSError:
                return
            path = path.parent

    def _versions_of_dir(self, pod_dir: Path) -> list[str]:
        try:
            return [e.name for e in os.scandir(pod_dir) if e.name != CURRENT and not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def verify(self) -> list[str]:
        """Every problem with what is installed, one line each; [] when all is intact."""
        with self.locked(create=False) as exists:
            if not exists:
                return []
            problems: list[str] = []
            checks = _ImageChecks()
            if self.images.is_dir():
                for entry in sorted(os.listdir(self.images)):
                    if entry.startswith("."):
                        continue
                    for problem in self._check_image(entry, checks):
                        problems.append(f"images/{entry}: {problem}")
            # Walk pod directories and record-less versions too: a version whose record was
            # removed, or a `current` whose versions were, must not make verify blind.
            pod_dirs = set()
            for kind, vdir in self._walk_pods():
                if kind == "pod":
                    pod_dirs.add(vdir)
                    continue
                label, version = self._label_of(vdir)
                pod_dirs.add(vdir.parent)
                record = self._read_record(vdir)
                if record is None:
                    problems.append(f"{label} {version}: {RECORD}: missing or unreadable")
                    continue
                for problem in diff_trees(record["tree"], scan_tree(vdir)):
                    problems.append(f"{label} {version}: {problem}")
                for name, image_id in sorted(record.get("images", {}).items()):
                    if not self.image_dir(image_id).is_dir():
                        problems.append(f"{label} {version}: image {name} ({short(image_id)}): missing")
            for pod_dir in sorted(pod_dirs):
                current = self._current(pod_dir)
                label = self._label_of_pod_dir(pod_dir)
                if current is None:
                    if os.path.lexists(pod_dir / CURRENT):
                        problems.append(f"{label}: current is not a symbolic link")
                # Only a version name of this pod directory counts (`/` would lead elsewhere).
                elif "/" in current or current.startswith(".") or not (pod_dir / current / RECORD).is_file():
                    problems.append(f"{label}: current points to {current!r}, which is not installed")
            return problems
