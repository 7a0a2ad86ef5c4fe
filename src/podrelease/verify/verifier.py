"""`doit verify`: check a release root's artifacts against themselves and their sources.

Reads only; never repairs. Every problem found becomes one `Problem`, shown
as `path[:line]: message` with the path relative to the release root.

What is checked:

- images (`images/<label_path>/<image>/<version>/`): `image.aci` decompresses
  (gzip, CRC and length included), the sha512 of the tar inside equals the
  `sha512` file, the stored file equals the `aci_sha512` that `build.json`
  recorded when it was built (so a flipped bit anywhere in it is seen, even
  in gzip header bytes that don't change the tar), the manifest's version
  label names the directory's version, and `build.json` agrees with the
  directory and the id.
- pod directories: `pod.json` parses and has the spec's shape; its name,
  channel and version are its directory's; every symlink is relative,
  resolves, and stays inside the release root; each image and volume link
  leads to the version pod.json names; each image's id is the id of the
  image found there; each volume file still has its recorded sha512; each
  pod file is there.
- tips: every pod with a released version has a `tip`, a symlink to the
  highest released version (numeric order) whose instruction is not
  `yanked`; a pod whose every released version is yanked has no tip.
- instructions: they load (and resolve against the build rules as a release
  would), and a released one agrees with its pod directory: revision, pinned
  and default image and volume versions, channel parameters.
- build files: they load (a broken one stops every release).
- drift (warnings): the newest built version of each image is compared with
  what its rule would build now (`build.json` inputs: rule fields, every
  rootfs path with its mode and sha256). A difference means the rule or its
  files changed while the version stayed the same, so the change will never
  be released under that version. Older versions are history and are not
  compared; nor is an image that has a higher version planned but unbuilt
  (releasing it will build the change).

Images and volume files are hashed once each, in parallel threads (zlib and
hashlib release the GIL), streaming 1 MiB at a time: memory stays flat.

One fault is one line: when an image is broken, pods naming it by either
its sha512 file's id or its content's id are not reported again, and
`build.json` (which records both the id and the sha512 of `image.aci` as
stored) decides whether `image.aci` or `sha512` is the file that changed.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..build import archive
from ..build import imaging
from ..model import instructions
from ..model import rules
from ..model.documents import load as load_yaml
from ..core.errors import UserError, UserErrors
from ..model.layout import CHANNEL_FILE, INSTRUCTION_SUFFIX, POD_JSON, TIP, ReleaseRoot
from ..core.names import Label, check_ac_name, check_label_path, check_segment, check_version, version_key
from ..core.errors import PodJsonError
from ..model.tip import tip_version
from ..model.plan import effective_rule, make_plan
from ..core.podjson import MAX_POD_JSON, parse_document
from ..core.hashing import AciDigest, aci_digest, file_digest, sha512_file

CHUNK = 1 << 20  # bytes read, inflated and hashed at a time
MANIFEST_HEAD = 1 << 16  # the first bytes of a tar kept to read its manifest (its first member)
MAX_BUILD_JSON = 64 << 20
MAX_NAMED_CHANGES = 8  # changed inputs listed by name in one drift warning

ERROR = "error"
WARNING = "warning"

HEX512 = re.compile(r"[0-9a-f]{128}\Z")
IMAGE_FILES = (imaging.IMAGE_FILE, imaging.SHA512_FILE, imaging.BUILD_RECORD_FILE)



# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Problem:
    """One thing wrong. `path` is relative to the release root."""

    kind: str  # image, pod, tip, instruction, rule, drift
    path: str
    message: str
    severity: str = ERROR  # or WARNING
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{where}: {prefix}{self.message}"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "message": self.message,
        }


@dataclass
class Report:
    problems: list[Problem]
    checked: dict[str, int]

    @property
    def errors(self) -> int:
        return sum(p.severity == ERROR for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == WARNING for p in self.problems)

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors or (strict and self.warnings))

    def summary(self) -> str:
        c = self.checked
        return (
            f"verify: {_count(self.errors, 'error')}, {_count(self.warnings, 'warning')} "
            f"(checked {_count(c['images'], 'image')}, {_count(c['pods'], 'pod')}, "
            f"{_count(c['tips'], 'tip')}, {_count(c['instructions'], 'instruction')})"
        )

    def to_json(self) -> dict:
        return {
            "problems": [p.to_json() for p in self.problems],
            "checked": dict(self.checked),
            "errors": self.errors,
            "warnings": self.warnings,
        }


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def verify(root: ReleaseRoot, workers: int | None = None) -> Report:
    """Check everything under `root`; return every problem, sorted by path."""
    return _Verifier(root, workers or archive.default_workers()).run()


# ---------------------------------------------------------------- hashing (pure-ish)


def read_manifest(head: bytes) -> dict | None:
    """The ACI's first member is `manifest` (entries are sorted); None if unreadable from `head`."""
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != "manifest" or not member.isfile():
                return {"_not_first": member.name if member is not None else None}
            data = tar.extractfile(member).read()
        manifest = json.loads(data)
        return manifest if isinstance(manifest, dict) else {"_invalid": True}
    except (tarfile.TarError, EOFError, OSError):
        return None  # the manifest does not fit in the head: not checked
    except (ValueError, UnicodeDecodeError):
        return {"_invalid": True}


# ---------------------------------------------------------------- drift (pure-ish)


def current_inputs(rule: rules.ImageRule, version: str) -> dict:
    """What `imaging.build_image` would record as `inputs` if it built `rule` now."""
    tree = imaging.rootfs_tree(rule)
    digests = {path: file_digest(node.source, "sha256", nofollow=True) for path, node in tree.items() if node.kind == "file"}
    return imaging.build_record(rule, version, "0" * 128, tree, digests)["inputs"]


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Names of what differs between two `build.json` inputs, e.g. `rule.app.exec`, `file /opt/x`."""
    names: list[str] = []
    old_rule = old.get("rule") if isinstance(old.get("rule"), dict) else {}
    new_rule = new.get("rule") or {}
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
        before, after = old_items.get(path), new_items.get(path)
        if before == after:
            continue
        kind = (after or before).get("type", "path")
        if before is None:
            names.append(f"{kind} {path} (new)")
        elif after is None:
            names.append(f"{kind} {path} (gone)")
        elif before.get("type") != after.get("type"):
            names.append(f"{kind} {path} (was a {before.get('type')})")
        elif {k: v for k, v in before.items() if k != "mode"} == {k: v for k, v in after.items() if k != "mode"}:
            names.append(f"{kind} {path} (mode)")
        else:
            names.append(f"{kind} {path}")
    return names


def _by_path(items) -> dict[str, dict]:
    if not isinstance(items, list):
        return {}
    return {i["path"]: i for i in items if isinstance(i, dict) and isinstance(i.get("path"), str)}


# ---------------------------------------------------------------- pod.json shape (pure)


def _version_or_none(text: object) -> str | None:
    try:
        return check_version(text)
    except ValueError:
        return None


# ---------------------------------------------------------------- the walk


@dataclass
class ImageDir:
    path: Path
    label: Label
    version: str
    aci: AciDigest | None = None
    recorded: str | None = None  # hex in the sha512 file, if well-formed
    record: dict | None = None  # build.json, if it parses
    broken: bool = False  # an error was reported for it
    unreadable: str | None = None  # why image.aci could not be read

    @property
    def id(self) -> str | None:
        """The best-known id: of the content if it decompresses, else the sha512 file's."""
        if self.aci is not None and self.aci.tar_sha512:
            return f"sha512-{self.aci.tar_sha512}"
        return f"sha512-{self.recorded}" if self.recorded else None

    @property
    def ids(self) -> set[str]:
        """Ids a pod may name without a fault of its own.

        A sound image has one id. A broken one (already reported) may be
        named by its content's id or by its sha512 file's: the fault is the
        image's, and one fault is one line.
        """
        if not self.broken:
            return {self.id} if self.id else set()
        ids = {f"sha512-{self.recorded}"} if self.recorded else set()
        if self.aci is not None and self.aci.tar_sha512:
            ids.add(f"sha512-{self.aci.tar_sha512}")
        return ids


@dataclass
class PodDir:
    path: Path
    version: str
    doc: dict | None = None  # pod.json when it has the spec's shape


@dataclass
class PodHome:
    """`channels/<channel>/<label_path>/<pod>/`: instructions, pod directories, tip."""

    channel: str
    folder: Path
    parts: tuple[str, ...]
    label: Label | None = None
    pod_dirs: dict[str, PodDir] = field(default_factory=dict)
    instructions: list[Path] = field(default_factory=list)
    tip: Path | None = None
    yanked: set[str] = field(default_factory=set)  # versions whose instruction says `yanked: true`
    unreadable: bool = False  # an instruction did not load: which versions are yanked is unknown


class _Verifier:
    def __init__(self, root: ReleaseRoot, workers: int):
        self.root = root
        self.real_root = os.path.realpath(root.path)
        self.workers = max(1, workers)
        self.problems: list[Problem] = []
        self.checked = {"images": 0, "pods": 0, "tips": 0, "instructions": 0, "build_files": 0}
        self.images: dict[tuple[Label, str], ImageDir] = {}
        self.homes: list[PodHome] = []
        self.homes_by_folder: dict[Path, PodHome] = {}
        self.volume_digests: dict[str, str | OSError] = {}
        self._reals: dict[str, str] = {}
        self._resolving: set[str] = set()

    def report(self, kind: str, path: Path | str, message: str, severity: str = ERROR, line: int | None = None) -> None:
        shown = self.root.shown(path) if isinstance(path, Path) else path
        self.problems.append(Problem(kind, shown, message, severity, line))

    def report_error(self, kind: str, err: UserError, severity: str = ERROR) -> None:
        for one in getattr(err, "errors", [err]):
            self.problems.append(Problem(kind, one.path or "", one.message, severity, one.line))

    def run(self) -> Report:
        self.find_images()
        self.find_pod_homes()
        for home in self.homes:
            for pod in home.pod_dirs.values():
                self.read_pod_json(home, pod)
        build_files, build_errors = self.load_build_files()
        defaults, default_errors = self.load_channel_defaults()
        loaded = self.load_instructions()
        planned = self.plan(build_files, loaded, defaults, build_errors or default_errors)
        drift_jobs = self.drift_jobs(build_files, planned)
        self.hash_everything(drift_jobs)
        for image in self.images.values():
            self.check_image(image)
        for home in self.homes:
            for pod in home.pod_dirs.values():
                self.check_pod_links(home, pod)
            self.check_tip(home)
        for instruction in loaded:
            self.check_agreement(instruction)
        for job in drift_jobs:
            self.report_drift(job)
        problems = sorted(self.problems, key=lambda p: (p.path, p.line or 0, p.message))
        return Report(problems, self.checked)

    # ------------------------------------------------------------ discovery

    def find_images(self) -> None:
        top = self.root.path / "images"
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files = [f for f in filenames if not f.startswith(".")]
            folder = Path(dirpath)
            if not any(f in IMAGE_FILES for f in files):
                if dirnames:  # a label-path or image folder: stray files are noted, the walk goes on
                    for name in sorted(files):
                        self.report("image", folder / name, "unexpected file among image folders", WARNING)
                    continue
                if not files:
                    continue
            self.checked["images"] += 1
            for name in sorted(dirnames + files):
                if name not in IMAGE_FILES:
                    self.report("image", folder / name, "unexpected entry in an image directory", WARNING)
            dirnames[:] = []
            parts = folder.relative_to(top).parts
            try:
                if len(parts) < 2:
                    raise ValueError("not images/<label_path>/<image>/<version>/")
                version = check_version(parts[-1])
                name = check_ac_name(parts[-2], "image name")
                label_path = check_label_path("/".join(parts[:-2]))
            except ValueError as err:
                self.report("image", folder, f"not an image directory: {err}")
                continue
            label = Label(label_path, name)
            self.images[(label, version)] = ImageDir(folder, label, version)

    def find_pod_homes(self) -> None:
        top = self.root.channels
        if not top.is_dir():
            return
        for channel in sorted(os.listdir(top)):
            folder = top / channel
            if channel.startswith(".") or not folder.is_dir():
                continue
            try:
                check_segment(channel, "channel")
            except ValueError as err:
                self.report("instruction", folder, str(err))
                continue
            self._walk(channel, folder, ())

    def _walk(self, channel: str, folder: Path, parts: tuple[str, ...]) -> None:
        """Like `ReleaseRoot.instruction_paths`, but collects pod directories and tips too."""
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            self.report("pod", folder, f"cannot list: {err.strerror}")
            return
        names = {e.name for e in entries}
        home = PodHome(channel, folder, parts)
        for entry in entries:
            name, path = entry.name, Path(entry.path)
            if name.startswith("."):
                continue
            if parts and name == TIP:
                home.tip = path
            elif entry.is_dir(follow_symlinks=False):
                if parts and (name + INSTRUCTION_SUFFIX in names or os.path.lexists(path / POD_JSON)):
                    home.pod_dirs[name] = PodDir(path, name)
                else:
                    self._walk(channel, path, parts + (name,))
            elif name.endswith((".yaml", ".yml")):
                if not parts and name == CHANNEL_FILE:
                    continue
                home.instructions.append(path)
            elif parts and entry.is_symlink() and name + INSTRUCTION_SUFFIX in names:
                self.report("pod", path, "a pod directory must be a directory, not a symlink")
        if not (home.pod_dirs or home.instructions or home.tip):
            return
        self.checked["instructions"] += len(home.instructions)
        self.checked["pods"] += len(home.pod_dirs)
        if parts:
            try:
                home.label = Label(check_label_path("/".join(parts[:-1])), check_ac_name(parts[-1], "pod name"))
            except ValueError as err:
                if not home.instructions:  # an instruction reports its own bad path
                    self.report("pod", folder, f"not a pod folder: {err}")
        self.homes.append(home)
        self.homes_by_folder[folder] = home

    # ------------------------------------------------------------ sources

    def load_build_files(self) -> tuple[list[rules.BuildFile], bool]:
        loaded, failed = [], False
        for path, label_path in self.root.build_files():
            self.checked["build_files"] += 1
            try:
                loaded.append(rules.load_build_file(path, self.root.shown(path), label_path))
            except UserError as err:
                self.report_error("rule", err)
                failed = True
        return loaded, failed

    def load_channel_defaults(self) -> tuple[dict, bool]:
        """Each `channels/<channel>/channel.yaml`: a broken one stops every release."""
        defaults, failed = {}, False
        for home in self.homes:
            channel = home.channel
            path = self.root.channel_file(channel)
            if channel in defaults or not path.is_file():
                continue
            try:
                defaults[channel] = instructions.load_channel_defaults(path, self.root.shown(path))
            except UserError as err:
                self.report_error("instruction", err)
                failed = True
        return defaults, failed

    def load_instructions(self) -> list[instructions.Instruction]:
        loaded = []
        for home in self.homes:
            for path in home.instructions:
                try:
                    instruction = instructions.load_instruction(
                        self.root.instruction_path(home.channel, path, home.parts, path.is_file() and not path.is_symlink())
                    )
                except UserError as err:
                    self.report_error("instruction", err)
                    home.unreadable = True
                    continue
                loaded.append(instruction)
                if instruction.yanked:
                    home.yanked.add(instruction.version)
        return loaded

    def plan(self, build_files, loaded, defaults: dict, source_errors: bool) -> list:
        """The image builds a release would make (yanked instructions build nothing).

        Plan errors are reported as a release would report them, unless a
        broken build or channel file already explains why the plan fails.
        """
        try:
            return _builds(make_plan(build_files, loaded, defaults))
        except UserErrors as err:
            if not source_errors:
                self.report_error("instruction", err)
        planned = []
        for instruction in loaded:
            try:
                planned.extend(_builds(make_plan(build_files, [instruction], defaults)))
            except UserError:
                continue
        return planned

    # ------------------------------------------------------------ pod.json

    def read_pod_json(self, home: PodHome, pod: PodDir) -> None:
        path = pod.path / POD_JSON
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                self.report("pod", path, "pod.json is not a regular file")
                return
            with open(path, "rb") as f:
                data = f.read(MAX_POD_JSON + 1)
        except FileNotFoundError:
            self.report("pod", pod.path, "pod directory has no pod.json")
            return
        except OSError as err:
            self.report("pod", path, f"cannot read: {err.strerror}")
            return
        if len(data) > MAX_POD_JSON:
            self.report("pod", path, f"larger than {MAX_POD_JSON >> 20} MiB: not a pod.json")
            return
        try:
            doc = json.loads(data)
        except UnicodeDecodeError:
            self.report("pod", path, "not valid JSON: not UTF-8")
            return
        except json.JSONDecodeError as err:
            self.report("pod", path, f"not valid JSON: {err.msg}", line=err.lineno)
            return
        try:
            parse_document(doc)
        except PodJsonError as err:
            self.report("pod", path, f"does not match the spec: {err}")
            return
        pod.doc = doc
        self.check_pod_fields(home, pod, path)
        for volume in doc["volumes"]:
            for entry in volume["files"]:
                real = self.realpath(pod.path / entry["path"])
                if self._inside_root(real) and os.path.isfile(real):
                    self.volume_digests.setdefault(real, None)

    def check_pod_fields(self, home: PodHome, pod: PodDir, path: Path) -> None:
        doc = pod.doc
        if home.label is not None and doc["name"] != str(home.label):
            self.report("pod", path, f"name is {doc['name']!r}, but its directory holds the pod {home.label}")
        if doc["version"] != pod.version:
            self.report("pod", path, f"version is {doc['version']!r}, but its directory (and instruction) say {pod.version!r}")
        if doc["channel"] != home.channel:
            self.report("pod", path, f"channel is {doc['channel']!r}, but it is in channel {home.channel!r}")
        names: dict[str, str] = {POD_JSON: POD_JSON}
        # parse_document already vouched for labels, versions, ids, digests and volume paths;
        # what is left is how podrelease itself lays a pod directory out
        for i, image in enumerate(doc["images"]):
            what = f"images[{i}]"
            label = Label.parse(image["label"])
            if image["name"] != label.name:
                self.report("pod", path, f"{what}.name is {image['name']!r}, but its label is {label}")
            if image["path"] != f"{image['name']}/{imaging.IMAGE_FILE}":
                self.report("pod", path, f"{what}.path is {image['path']!r}, not {image['name'] + '/' + imaging.IMAGE_FILE!r}")
            self._unique(names, image["name"], f"image {image['name']!r}", path)
        for volume in doc["volumes"]:
            self._unique(names, volume["name"], f"volume {volume['name']!r}", path)
        for i, name in enumerate(doc["files"]):
            if not name or "/" in name or name in (".", ".."):
                self.report("pod", path, f"files[{i}] {name!r} is not a file name")
            self._unique(names, name, f"file {name!r}", path)
        manifest = doc["manifest"]
        apps = [(a.get("name"), (a.get("image") or {}).get("id") if isinstance(a.get("image"), dict) else None) for a in manifest.get("apps", [])]
        images = [(i["name"], i["id"]) for i in doc["images"]]
        if apps != images:
            self.report("pod", path, "manifest.apps do not run pod.json's images, one app per image with its id, in order")
        hosts = [v.get("name") for v in manifest.get("volumes", []) if v.get("kind") == "host"]
        if hosts != [v["name"] for v in doc["volumes"]]:
            self.report("pod", path, "manifest.volumes do not declare pod.json's volumes, one host volume each, in order")

    def _unique(self, names: dict[str, str], name: str, what: str, path: Path) -> None:
        if name in names:
            self.report("pod", path, f"{what} has the same name as {names[name]} in the pod directory")
        else:
            names[name] = what

    # ------------------------------------------------------------ hashing

    def hash_everything(self, drift_jobs: list) -> None:
        """Images, volume files and drift inputs, each once, on all cores."""
        sized = []
        for image in self.images.values():
            try:
                status = os.lstat(image.path / imaging.IMAGE_FILE)
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode):
                sized.append((status.st_size, image))
        sized.sort(key=lambda item: -item[0])  # the biggest first: threads finish together
        jobs: list = [(self._hash_image, image) for _, image in sized]
        jobs += [(self._hash_volume_file, real) for real in self.volume_digests]
        jobs += [(self._compute_drift, job) for job in drift_jobs]
        if not jobs:
            return
        with ThreadPoolExecutor(min(self.workers, len(jobs)), thread_name_prefix="verify") as pool:
            for future in [pool.submit(work, item) for work, item in jobs]:
                future.result()

    def _hash_image(self, image: ImageDir) -> None:
        try:
            image.aci = aci_digest(image.path / imaging.IMAGE_FILE, MANIFEST_HEAD)
        except OSError as err:
            image.unreadable = f"cannot be read: {err.strerror}"

    def _hash_volume_file(self, real: str) -> None:
        try:
            self.volume_digests[real] = sha512_file(real)
        except OSError as err:
            self.volume_digests[real] = err

    # ------------------------------------------------------------ images

    def check_image(self, image: ImageDir) -> None:
        """One line per fault, blaming the file that changed when build.json can tell which."""
        folder = image.path
        sha_path, aci_path = folder / imaging.SHA512_FILE, folder / imaging.IMAGE_FILE
        self.read_sha512_file(image, sha_path)
        record = self.read_build_record(image)
        aci = image.aci
        if image.unreadable:
            self.error_image(image, aci_path, image.unreadable)
        elif aci is None:
            if os.path.lexists(aci_path):
                self.error_image(image, aci_path, "image.aci is not a regular file")
            else:
                self.error_image(image, folder, "no image.aci: the image is not built")
        elif aci.error or not aci.compressed:
            self.error_image(image, aci_path, _inflate_problem(aci))
        else:
            actual = f"sha512-{aci.tar_sha512}"
            stored_file = record.get("aci_sha512") if record else None
            file_changed = isinstance(stored_file, str) and stored_file != aci.file_sha512
            if image.recorded and aci.tar_sha512 != image.recorded:
                recorded = f"sha512-{image.recorded}"
                if file_changed or (stored_file is None and record and record.get("id") == recorded):
                    self.error_image(
                        image, aci_path,
                        f"changed since it was built: it holds {_short(actual)}, but its sha512 file and build.json say {_short(recorded)}",
                    )
                else:
                    self.error_image(image, sha_path, f"says {_short(recorded)}, but image.aci holds {_short(actual)}")
            elif file_changed:
                self.error_image(
                    image, aci_path,
                    "changed since it was built: its bytes no longer have the sha512 build.json recorded "
                    "(the tar inside is intact; its gzip wrapper is not)",
                )
            manifest = read_manifest(aci.head)
            if manifest is not None and not image.broken:
                self.check_manifest(image, aci_path, manifest)
        if record is not None:
            self.check_build_record(image, record)

    def read_sha512_file(self, image: ImageDir, path: Path) -> None:
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise IsADirectoryError
            with open(path, "rb") as f:
                text = f.read(1024)
            hex_ = text[:-1].decode("ascii") if text.endswith(b"\n") else None
            if hex_ is None or not HEX512.match(hex_):
                self.error_image(image, path, "sha512 file does not hold a sha512 hex digest and a newline")
            else:
                image.recorded = hex_
        except FileNotFoundError:
            self.error_image(image, image.path, "no sha512 file: the image is not built")
        except (OSError, UnicodeDecodeError):
            self.error_image(image, path, "sha512 file is not a readable regular file")

    def read_build_record(self, image: ImageDir) -> dict | None:
        path = image.path / imaging.BUILD_RECORD_FILE
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BUILD_JSON + 1)
            record = json.loads(data)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            return None  # the drift check, which needs it, says so
        except (OSError, ValueError) as err:
            self.report("image", path, f"build.json is unreadable ({err}): drift cannot be checked", WARNING)
            return None
        image.record = record
        return record

    def error_image(self, image: ImageDir, path: Path, message: str) -> None:
        image.broken = True
        self.report("image", path, message)

    def check_manifest(self, image: ImageDir, path: Path, manifest: dict) -> None:
        if "_not_first" in manifest:
            self.error_image(image, path, f"the tar's first member is {manifest['_not_first']!r}, not the manifest")
            return
        labels = manifest.get("labels")
        versions = [l.get("value") for l in labels if isinstance(l, dict) and l.get("name") == "version"] if isinstance(labels, list) else []
        if manifest.get("acKind") != "ImageManifest" or len(versions) != 1:
            self.error_image(image, path, "its manifest is not an appc ImageManifest with a version label")
        elif versions[0] != image.version:
            self.error_image(image, path, f"its manifest says version {versions[0]!r}, but it is in the directory of version {image.version!r}")

    def check_build_record(self, image: ImageDir, record: dict) -> None:
        """build.json names this directory's image and, unless a fault is already reported, its id."""
        path = image.path / imaging.BUILD_RECORD_FILE
        if record.get("label") != str(image.label) or record.get("version") != image.version:
            self.error_image(
                image, path,
                f"records image {record.get('label')} {record.get('version')}, but it is in the directory of {image.label} {image.version}",
            )
        elif not image.broken and image.aci and image.aci.tar_sha512 and record.get("id") != f"sha512-{image.aci.tar_sha512}":
            self.error_image(image, path, f"records id {_short(str(record.get('id')))}, but image.aci holds {_short('sha512-' + image.aci.tar_sha512)}")

    # ------------------------------------------------------------ pod links

    def realpath(self, path: Path | str) -> str:
        """`os.path.realpath`, remembering every resolved prefix: pods share most of their paths."""
        path = os.fspath(path)
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)  # not abspath: `..` must follow symlinks, as realpath does
        return self._real(path)

    def _real(self, path: str) -> str:
        known = self._reals.get(path)
        if known is not None:
            return known
        parent, name = os.path.split(path.rstrip("/"))
        if not name:
            return "/"
        base = self._real(parent)
        if name == "..":
            result = os.path.dirname(base)
        elif name == ".":
            result = base
        else:
            full = os.path.join(base, name)
            try:
                target = os.readlink(full)
            except OSError:  # not a symlink, or not there: the path stands as it is
                result = full
            else:
                if full in self._resolving:  # a symlink loop: give up on it as realpath does
                    return full
                self._resolving.add(full)
                try:
                    result = self._real(os.path.join(base, target))
                finally:
                    self._resolving.discard(full)
        self._reals[path] = result
        return result

    def _inside_root(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def check_pod_links(self, home: PodHome, pod: PodDir) -> None:
        """Every symlink resolves inside the root; images, volumes and files are what pod.json says."""
        bad_links = set()
        try:
            entries = sorted(os.scandir(pod.path), key=lambda e: e.name)
        except OSError as err:
            self.report("pod", pod.path, f"cannot list: {err.strerror}")
            return
        for entry in entries:
            if entry.is_symlink() and not self.check_link(Path(entry.path)):
                bad_links.add(entry.name)
        doc = pod.doc
        if doc is None:
            return
        expected = {POD_JSON} | {i["name"] for i in doc["images"]} | {v["name"] for v in doc["volumes"]} | set(doc["files"])
        for entry in entries:
            if not entry.name.startswith(".") and entry.name not in expected:
                self.report("pod", Path(entry.path), "not named in pod.json", WARNING)
        for image in doc["images"]:
            label, version = Label.parse(image["label"]), image["version"]  # vouched for by parse_document
            if image["name"] in bad_links:
                continue
            target = self.root.image_dir(label, version)
            if not self.check_named_link(pod.path / image["name"], target, f"image {label} {version}"):
                continue
            found = self.images.get((label, version))
            if found is None:
                self.report("pod", pod.path / image["name"], f"image {label} {version} is not built: {self.root.shown(target)} is empty")
            elif found.ids and image["id"] not in found.ids:
                self.report(
                    "pod", pod.path / POD_JSON,
                    f"image {label} {version} has id {_short(image['id'])}, but {self.root.shown(target)} holds {_short(found.id)}",
                )
        for volume in doc["volumes"]:
            label, version = Label.parse(volume["label"]), volume["version"]
            if volume["name"] in bad_links:
                continue
            target = self.root.volume_dir(label, version)
            if not self.check_named_link(pod.path / volume["name"], target, f"volume {label} {version}"):
                continue
            for entry in volume["files"]:
                self.check_volume_file(pod, entry)
        for name in doc["files"]:
            path = pod.path / name
            if name and "/" not in name and not (path.is_file() and not path.is_symlink()):
                self.report("pod", path, "pod file named in pod.json is missing or not a regular file")

    def check_link(self, link: Path) -> bool:
        target = os.readlink(link)
        real = self.realpath(link)
        if os.path.isabs(target):
            self.report("pod", link, f"symlink -> {target} is absolute; pod links are relative")
            return False
        if not self._inside_root(real):
            self.report("pod", link, f"symlink -> {target} leads outside the release root")
            return False
        if not os.path.exists(real):
            self.report("pod", link, f"symlink -> {target} is dangling: {self.root.shown(Path(real))} does not exist")
            return False
        return True

    def check_named_link(self, link: Path, target: Path, what: str) -> bool:
        if not os.path.lexists(link):
            self.report("pod", link, f"missing: should link to {what} ({self.root.shown(target)})")
            return False
        if not link.is_symlink():
            self.report("pod", link, f"not a symlink to {what} ({self.root.shown(target)})")
            return False
        real = self.realpath(link)
        if real != self.realpath(target):
            self.report("pod", link, f"links to {self.root.shown(Path(real))}, but pod.json names {what} ({self.root.shown(target)})")
            return False
        return True

    def check_volume_file(self, pod: PodDir, entry: dict) -> None:
        path = pod.path / entry["path"]
        real = self.realpath(path)
        digest = self.volume_digests.get(real)
        if digest is None:
            if not self._inside_root(real):
                self.report("pod", path, "volume file leads outside the release root")
            else:
                self.report("pod", path, "volume file named in pod.json is missing")
        elif isinstance(digest, OSError):
            self.report("pod", path, f"volume file cannot be read: {digest.strerror}")
        elif digest != entry["sha512"]:
            self.report("pod", path, f"volume file changed: its sha512 is {_short(digest)}, pod.json recorded {_short(entry['sha512'])}")

    # ------------------------------------------------------------ tips

    def check_tip(self, home: PodHome) -> None:
        """tip -> the highest released version that is not yanked; no tip if there is none."""
        released = {
            name: pod for name, pod in home.pod_dirs.items()
            if _version_or_none(name) is not None and (pod.path / POD_JSON).is_file()
        }
        tip = home.tip or home.folder / TIP
        if not released and home.tip is None:
            return
        self.checked["tips"] += 1
        highest = tip_version(released, home.yanked)
        if home.tip is None:
            if highest is not None and not home.unreadable:
                self.report("tip", tip, f"missing: should point at {highest}, the highest released version")
            return
        if not tip.is_symlink():
            self.report("tip", tip, "is not a symlink")
            return
        target = os.readlink(tip)
        if not os.path.exists(tip):
            self.report("tip", tip, f"points at {target!r}, which does not exist{_should(highest)}")
        elif "/" in target or target not in home.pod_dirs:
            self.report("tip", tip, f"points at {target!r}, which is not a version of this pod{_should(highest)}")
        elif target not in released:
            self.report("tip", tip, f"points at {target!r}, which is not released (no pod.json){_should(highest)}")
        elif home.unreadable:
            return  # which versions are yanked is unknown: an instruction did not load (reported)
        elif target in home.yanked:
            self.report("tip", tip, f"points at {target}, which is yanked{_should(highest)}")
        elif highest is None:
            self.report("tip", tip, f"points at {target!r}, but no released version of this pod is left: there should be no tip")
        elif target != highest:
            self.report("tip", tip, f"points at {target}, but the highest released version is {highest}")

    # ------------------------------------------------------------ instructions

    def check_agreement(self, instruction: instructions.Instruction) -> None:
        """A released instruction and its pod directory say the same."""
        pod = self.root.pod_dir(instruction.channel, instruction.pod, instruction.version)
        home = self.homes_by_folder.get(pod.parent)
        found = home.pod_dirs.get(instruction.version) if home else None
        if found is None or found.doc is None:
            return  # pending, or its pod.json is already reported
        doc, shown = found.doc, instruction.shown
        pod_shown = self.root.shown(pod)
        lines = _Lines(instruction.path, shown)
        if doc["revision"] != instruction.revision:
            self.report(
                "instruction", shown,
                f"revision is {instruction.revision!r}, but {pod_shown} was released with {doc['revision']!r}",
                line=lines.line(("revision",)),
            )
        for key, pins in (("images", instruction.images), ("volumes", instruction.volumes)):
            what = key[:-1]
            released = {}
            for item in doc[key]:
                released[Label.parse(item["label"])] = item["version"]
            for pin in pins:
                if pin.label not in released:
                    self.report("instruction", shown, f"pins {what} {pin.label}, which {pod_shown} does not have", line=pin.line)
                elif released[pin.label] != pin.version:
                    self.report(
                        "instruction", shown,
                        f"pins {what} {pin.label} at {pin.version}, but {pod_shown} has {released[pin.label]}",
                        line=pin.line,
                    )
            pinned = {p.label for p in pins}
            for label, version in released.items():
                if label not in pinned and version != instruction.version:
                    self.report(
                        "instruction", shown,
                        f"{pod_shown} has {what} {label} at {version}, but the instruction asks for {instruction.version} (no pin)",
                        line=lines.line((key,)),
                    )
        self.check_parameters(instruction, doc, pod_shown, lines)

    def check_parameters(self, instruction, doc: dict, pod_shown: str, lines) -> None:
        # only the instruction's own parameters: they end every exec and override the
        # channel's defaults, which may have changed since (that changes new releases only)
        args = list(instruction.parameters.args)
        environment = dict(instruction.parameters.environment)
        for app in doc["manifest"].get("apps", []):
            inner = app.get("app")
            if not isinstance(inner, dict):
                continue
            exec_ = inner.get("exec") or []
            if args and (len(exec_) < len(args) or exec_[-len(args):] != args):
                self.report(
                    "instruction", instruction.shown,
                    f"parameters.args {args} are not what app {app.get('name')!r} of {pod_shown} ends its exec with",
                    line=lines.line(("parameters", "args")),
                )
            have = {e.get("name"): e.get("value") for e in inner.get("environment") or [] if isinstance(e, dict)}
            wrong = sorted(k for k, v in environment.items() if have.get(k) != v)
            if wrong:
                self.report(
                    "instruction", instruction.shown,
                    f"parameters.environment {', '.join(wrong)} differ from app {app.get('name')!r} of {pod_shown}",
                    line=lines.line(("parameters", "environment")),
                )

    # ------------------------------------------------------------ drift

    def drift_jobs(self, build_files, planned) -> list["DriftJob"]:
        """The newest built version of each image that has a rule, unless a higher one is pending."""
        image_rules = {r.label: r for b in build_files for r in b.images.values()}
        built: dict[Label, list[str]] = defaultdict(list)
        for label, version in self.images:
            built[label].append(version)
        pending: dict[Label, list[str]] = defaultdict(list)
        for build in planned:
            if (build.rule.label, build.version) not in self.images:
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
            jobs.append(DriftJob(rule, self.images[(label, newest)]))
        return jobs

    def _compute_drift(self, job: "DriftJob") -> None:
        try:
            job.inputs = current_inputs(job.rule, job.image.version)
        except UserError as err:
            job.failure = f"its rule no longer builds: {err}"
        except OSError as err:
            job.failure = f"cannot read its sources: {err.filename}: {err.strerror}"

    def report_drift(self, job: "DriftJob") -> None:
        image, rule = job.image, job.rule
        where = f"{rule.shown}:{rule.line}" if rule.line else rule.shown
        if job.failure:
            self.report("drift", image.path, f"image {image.label} {image.version} cannot be compared with its rule ({where}): {job.failure}", WARNING)
            return
        record_path = image.path / imaging.BUILD_RECORD_FILE
        if image.record is None:
            if not os.path.lexists(record_path):
                self.report("drift", image.path, f"no build.json: cannot tell whether image {image.label} {image.version} was built from its rule as it is now", WARNING)
            return
        stored = image.record.get("inputs")
        if stored == job.inputs:
            return
        changes = changed_inputs(stored, job.inputs) if isinstance(stored, dict) else ["inputs"]
        if not changes:
            return
        named = ", ".join(changes[:MAX_NAMED_CHANGES])
        if len(changes) > MAX_NAMED_CHANGES:
            named += f" and {len(changes) - MAX_NAMED_CHANGES} more"
        self.report(
            "drift", image.path,
            f"image {image.label} {image.version} was built from other inputs than its rule ({where}) gives now: "
            f"changed {named}; release the change under a new version",
            WARNING,
        )


def _builds(plan) -> list:
    return [build for pod in plan.pods.values() if not pod.instruction.yanked for build in pod.images]


class _Lines:
    """Line numbers in an instruction, parsed only if a problem needs one."""

    def __init__(self, path: Path, shown: str):
        self.path, self.shown = path, shown
        self._document = None

    def line(self, where: tuple) -> int | None:
        if self._document is None:
            try:
                self._document = load_yaml(self.path, self.shown)
            except UserError:
                return None
        return self._document.line(where)


@dataclass
class DriftJob:
    rule: rules.ImageRule
    image: ImageDir
    inputs: dict | None = None
    failure: str | None = None


def _inflate_problem(aci: AciDigest) -> str:
    """Why an image.aci is no gzip'd tar, as verify says it."""
    if aci.size == 0:
        return "is empty"
    if not aci.compressed:
        return "does not decompress: not gzip-compressed"
    return f"does not decompress: {aci.error}"


def _should(highest: str | None) -> str:
    if highest is None:
        return "; every released version is yanked, so there should be no tip"
    return f"; the highest released version is {highest}"


def _short(digest: str) -> str:
    """Enough of a digest to tell two apart."""
    return digest[: len("sha512-") + 16] + "…" if digest.startswith("sha512-") else digest[:16] + "…"
