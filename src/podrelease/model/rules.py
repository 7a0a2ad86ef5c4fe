"""Build rules: `shipyard/<label_path>/build.yaml` as frozen dataclasses.

A build file declares images (how to build code into an ACI) and pods (which
images and volumes are released together). Loading validates everything a
user can get wrong and reports it as `path:line: message`.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import UserError, UserErrors
from ..core.health import HTTP_PATH, MAX_TIMEOUT, ExecCheck, HealthCheck, HttpCheck, TcpCheck
from ..core.names import MAX_NAME, Label, check_ac_name, check_label_path, check_version, quoted
from .documents import ANY_KEY, Fields, load
from .layout import BUILD_FILE

if TYPE_CHECKING:
    from .layout import ReleaseRoot


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int
    count: int = 1
    socket_activated: bool = False

    def to_appc(self) -> dict:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "port": self.port,
            "count": self.count,
            "socketActivated": self.socket_activated,
        }


@dataclass(frozen=True)
class MountPoint:
    name: str
    path: str
    read_only: bool = False

    def to_appc(self) -> dict:
        return {"name": self.name, "path": self.path, "readOnly": self.read_only}


@dataclass(frozen=True)
class App:
    """The appc app of an image: what runs, as whom, with what."""

    exec: tuple[str, ...] = ()
    user: str = "0"
    group: str = "0"
    working_directory: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    ports: tuple[Port, ...] = ()
    mount_points: tuple[MountPoint, ...] = ()
    given: frozenset[str] | None = None  # keys the rule wrote; None: all of them

    def over(self, base: App) -> App:
        """This app on top of a base image's: settings not given are inherited,
        and environment merges (this app's values win)."""
        given = self.given if self.given is not None else APP_KEYS
        environment = dict(base.environment)
        environment.update(self.environment)
        return App(
            exec=self.exec if "exec" in given else base.exec,
            user=self.user if "user" in given else base.user,
            group=self.group if "group" in given else base.group,
            working_directory=self.working_directory if "workingDirectory" in given else base.working_directory,
            environment=tuple(environment.items()),
            ports=self.ports if "ports" in given else base.ports,
            mount_points=self.mount_points if "mountPoints" in given else base.mount_points,
        )

    def to_appc(self) -> dict:
        """The appc `app` object; keys appear only when they have a value."""
        app: dict = {}
        if self.exec:
            app["exec"] = list(self.exec)
        app["user"] = self.user
        app["group"] = self.group
        if self.working_directory:
            app["workingDirectory"] = self.working_directory
        if self.environment:
            app["environment"] = [{"name": k, "value": v} for k, v in self.environment]
        if self.mount_points:
            app["mountPoints"] = [m.to_appc() for m in self.mount_points]
        if self.ports:
            app["ports"] = [p.to_appc() for p in self.ports]
        return app


@dataclass(frozen=True)
class RootfsEntry:
    """Copy `src` (relative to the build file's folder) to `dst` in the image."""

    src: str
    dst: str
    mode: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class ImageRule:
    label: Label
    build_file: Path  # absolute path of the build.yaml declaring it
    line: int | None  # where the image is declared in build_file
    name: str  # appc image name
    rootfs: tuple[RootfsEntry, ...] = ()
    command: tuple[str, ...] | None = None
    app: App | None = None
    os: str = "linux"
    arch: str = "amd64"
    shown: str = ""  # build_file as shown in messages
    base: Label | None = None  # `from:` the image whose rootfs this one starts from
    base_version: str | None = None
    command_line: int | None = None  # where `command:` is (a failing command points there)

    @property
    def folder(self) -> Path:
        """Rootfs sources and `command` are relative to the build file's folder."""
        return self.build_file.parent


@dataclass(frozen=True)
class VolumeMount:
    name: str  # the volume's name in the pod (and in the pod manifest)
    label: Label
    path: str  # mount path inside every app
    read_only: bool = True


@dataclass(frozen=True)
class PodRule:
    label: Label
    build_file: Path
    line: int | None
    images: tuple[Label, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    files: tuple[str, ...] = ()  # relative to the build file's folder
    args: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    shown: str = ""  # build_file as shown in messages
    image_lines: tuple[int | None, ...] = ()  # where each of `images` is named
    health: HealthCheck | None = None  # how a running pod shows it is healthy

    @property
    def folder(self) -> Path:
        return self.build_file.parent

    def image_line(self, label: Label) -> int | None:
        """The line naming `label` in `images:` (the pod's line if unknown)."""
        for known, line in zip(self.images, self.image_lines, strict=False):
            if known == label:
                return line
        return self.line


@dataclass(frozen=True)
class BuildFile:
    path: Path
    label_path: str
    images: dict[str, ImageRule] = field(default_factory=dict)
    pods: dict[str, PodRule] = field(default_factory=dict)


# ---------------------------------------------------------------- loading

BUILD_FILE_KEYS = frozenset({"images", "pods"})
IMAGE_KEYS = frozenset({"name", "rootfs", "command", "app", "os", "arch", "from"})
ROOTFS_KEYS = frozenset({"src", "dst", "mode"})
APP_KEYS = frozenset({"exec", "user", "group", "workingDirectory", "environment", "ports", "mountPoints"})
PORT_KEYS = frozenset({"name", "protocol", "port", "count", "socketActivated"})
MOUNT_POINT_KEYS = frozenset({"name", "path", "readOnly"})
POD_KEYS = frozenset({"images", "volumes", "files", "args", "environment", "health"})
HEALTH_KEYS = frozenset({"http", "tcp", "exec", "timeout"})
DEFAULT_HEALTH_TIMEOUT = 30
VOLUME_KEYS = frozenset({"name", "label", "path", "read_only"})

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODE = re.compile(r"0?[0-7]{3,4}\Z")
MAX_IMAGE_PATH = 4095  # characters of a path in an image (PATH_MAX, 4096 bytes with its NUL)
AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*\Z")


def load_build_file(path: Path, shown_as: str, label_path: str) -> BuildFile:
    """Read `shipyard/<label_path>/build.yaml` into rules, validating everything."""
    _check_build_file_path(path, shown_as, label_path)
    doc = load(path, shown_as)
    fields = Fields(doc)
    top = fields.mapping((), BUILD_FILE_KEYS, "a build file")
    images = {
        name: _image_rule(fields, path, label_path, name)
        for name in fields.mapping(("images",), ANY_KEY, "images")
    } if "images" in top else {}
    pods = {
        name: _pod_rule(fields, path, label_path, name)
        for name in fields.mapping(("pods",), ANY_KEY, "pods")
    } if "pods" in top else {}
    return BuildFile(path, label_path, images, pods)


def _check_build_file_path(path: Path, shown_as: str, label_path: str) -> None:
    """The folders under shipyard/ are the label path: they must be valid segments.

    A `build.yml` is refused rather than ignored, which would leave its pods
    "not defined" with no hint why.
    """
    if path.name != BUILD_FILE:
        raise UserError(shown_as, None, f"build files are named {BUILD_FILE}, not {path.name}")
    try:
        check_label_path(label_path)
    except ValueError as err:
        raise UserError(shown_as, None, f"bad build file path: {err}") from None


def _image_rule(fields: Fields, path: Path, label_path: str, name: str) -> ImageRule:
    where = ("images", name)
    _check_key_name(fields, where, name, "image")
    spec = fields.mapping(where, IMAGE_KEYS, f"image {quoted(name)}")
    label = Label(label_path, name)
    appc_name = fields.text(where + ("name",), "name") if "name" in spec else label.join()
    if not AC_IDENTIFIER.match(appc_name):
        raise fields.doc.error(where + ("name",), f"image name {quoted(appc_name)} is not a valid appc name")
    rootfs = tuple(_rootfs_entry(fields, path, where + ("rootfs", i)) for i in fields.items(where + ("rootfs",), "rootfs"))
    command = None
    if spec.get("command") is not None:
        command = fields.texts(where + ("command",), "command")
        if not command:
            raise fields.doc.error(where + ("command",), "command must not be empty")
    app = _app(fields, where + ("app",)) if spec.get("app") is not None else None
    return ImageRule(
        label=label,
        build_file=path,
        line=fields.doc.line(where),
        name=appc_name,
        rootfs=rootfs,
        command=command,
        app=app,
        os=fields.text(where + ("os",), "os") if "os" in spec else "linux",
        arch=fields.text(where + ("arch",), "arch") if "arch" in spec else "amd64",
        shown=fields.doc.path,
        command_line=fields.doc.line(where + ("command",)) if command is not None else None,
        **(_base(fields, where + ("from",), label_path) if spec.get("from") is not None else {}),
    )


def _base(fields: Fields, where, label_path: str) -> dict:
    """`from: <image label>@<version>`: the image this one starts from."""
    text = fields.text(where, "from")
    label_text, at, version = text.rpartition("@")
    if not at:
        raise fields.doc.error(where, f"from {quoted(text)} must be <image label>@<version>, like //base:os@1.0.0")
    try:
        return {"base": Label.parse(label_text, default_path=label_path), "base_version": check_version(version, "base version")}
    except ValueError as err:
        raise fields.doc.error(where, f"from {quoted(text)}: {err}") from None


def _check_key_name(fields: Fields, where, name: str, what: str) -> None:
    try:
        check_ac_name(name, f"{what} name")
    except ValueError as err:
        raise fields.doc.error(where, str(err)) from None


def _rootfs_entry(fields: Fields, build_file: Path, where) -> RootfsEntry:
    spec = fields.mapping(where, ROOTFS_KEYS, "a rootfs entry")
    for key in ("src", "dst"):
        if key not in spec:
            raise fields.doc.error(where, f"rootfs entry needs {quoted(key)}")
    src = fields.text(where + ("src",), "src")
    dst = fields.text(where + ("dst",), "dst")
    if not src or src.startswith("/") or ".." in src.split("/"):
        raise fields.doc.error(where + ("src",), f"src {quoted(src)} must be a relative path inside {build_file.parent.name or '.'}/ (no '..')")
    if not _inside_folder(build_file.parent, src, follow_last=src.endswith("/")):
        raise fields.doc.error(where + ("src",), f"src {quoted(src)} leaves the build file's folder through a symlink")
    source = os.path.join(build_file.parent, src.rstrip("/"))  # lstat-able even if it is not a directory
    if not os.path.lexists(source):
        raise fields.doc.error(where + ("src",), f"src {quoted(src)} does not exist")
    if src.endswith("/") and not os.path.isdir(source):
        raise fields.doc.error(where + ("src",), f"src {quoted(src)} ends in '/' but is not a directory")
    if not dst.startswith("/") or ".." in dst.split("/"):
        raise fields.doc.error(where + ("dst",), f"dst {quoted(dst)} must be an absolute path in the image (no '..')")
    # A path no file system in a container takes would make an image nothing can unpack.
    if len(dst) > MAX_IMAGE_PATH:
        raise fields.doc.error(where + ("dst",), f"dst {quoted(dst)} is longer than {MAX_IMAGE_PATH} characters")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME for part in dst.split("/")):
        raise fields.doc.error(where + ("dst",), f"dst {quoted(dst)} has a segment longer than {MAX_NAME} bytes")
    mode = None
    if spec.get("mode") is not None:
        text = fields.text(where + ("mode",), "mode")
        if not MODE.match(text):
            raise fields.doc.error(where + ("mode",), f"mode {quoted(text)} must be octal, like \"0644\"")
        if os.path.islink(source) and not src.endswith("/"):
            raise fields.doc.error(where + ("mode",), f"src {quoted(src)} is a symlink, which is stored as is: a mode does not apply to it")
        mode = int(text, 8)
    return RootfsEntry(src=src, dst=dst, mode=mode, line=fields.doc.line(where))


def _inside_folder(folder: Path, relative: str, follow_last: bool) -> bool:
    """Whether `relative` stays in `folder` once symlinked parents are resolved.

    As the image builder does, the last component is left alone unless
    `follow_last`: a symlink named by `src` is stored as a symlink, not
    followed, so where it points does not matter here.
    """
    top = os.path.realpath(folder)
    joined = os.path.normpath(os.path.join(top, relative))
    if follow_last:
        resolved = os.path.realpath(joined)
    else:
        head, name = os.path.split(joined)
        resolved = os.path.join(os.path.realpath(head), name)
    return resolved == top or resolved.startswith(top + os.sep)


def _absolute(fields: Fields, where, what: str) -> str:
    text = fields.text(where, what)
    if not text.startswith("/") or posixpath.normpath(text) != text.rstrip("/") and text != "/":
        raise fields.doc.error(where, f"{what} {quoted(text)} must be a normalized absolute path")
    return text


def _app(fields: Fields, where) -> App:
    spec = fields.mapping(where, APP_KEYS, "app")
    exec_ = fields.texts(where + ("exec",), "exec")
    if exec_ and not exec_[0].startswith("/"):
        raise fields.doc.error(where + ("exec", 0), f"exec {quoted(exec_[0])} must be an absolute path")
    ports = tuple(_port(fields, where + ("ports", i)) for i in fields.items(where + ("ports",), "ports"))
    mount_points = tuple(
        MountPoint(
            name=fields.name(mp + ("name",), check_ac_name, "mount point name"),
            path=_absolute(fields, mp + ("path",), "mount point path"),
            read_only=fields.flag(mp + ("readOnly",), "readOnly") if "readOnly" in fields.mapping(mp, MOUNT_POINT_KEYS, "a mount point") else False,
        )
        for mp in (where + ("mountPoints", i) for i in fields.items(where + ("mountPoints",), "mountPoints"))
    )
    return App(
        exec=exec_,
        user=fields.text(where + ("user",), "user") if "user" in spec else "0",
        group=fields.text(where + ("group",), "group") if "group" in spec else "0",
        working_directory=_absolute(fields, where + ("workingDirectory",), "workingDirectory") if "workingDirectory" in spec else None,
        environment=environment(fields, where + ("environment",)),
        ports=ports,
        mount_points=mount_points,
        given=frozenset(spec),
    )


def _port(fields: Fields, where) -> Port:
    spec = fields.mapping(where, PORT_KEYS, "a port")
    for key in ("name", "protocol", "port"):
        if key not in spec:
            raise fields.doc.error(where, f"port needs {quoted(key)}")
    return Port(
        name=fields.name(where + ("name",), check_ac_name, "port name"),
        protocol=fields.text(where + ("protocol",), "protocol"),
        port=fields.integer(where + ("port",), "port", 1, 65535),
        count=fields.integer(where + ("count",), "count", 1, 65535) if "count" in spec else 1,
        socket_activated=fields.flag(where + ("socketActivated",), "socketActivated") if "socketActivated" in spec else False,
    )


def environment(fields: Fields, where) -> tuple[tuple[str, str], ...]:
    """An environment map, in file order; names are shell-style identifiers (at most 255 characters)."""
    pairs = []
    for name in fields.mapping(where, ANY_KEY, "environment"):
        if len(name) > MAX_NAME or not ENV_NAME.match(name):
            raise fields.doc.error(where + (name,), f"environment name {quoted(name)} is not valid")
        pairs.append((name, fields.text(where + (name,), f"environment {name}")))
    return tuple(pairs)


def _pod_rule(fields: Fields, path: Path, label_path: str, name: str) -> PodRule:
    where = ("pods", name)
    _check_key_name(fields, where, name, "pod")
    fields.mapping(where, POD_KEYS, f"pod {quoted(name)}")
    images = []
    for i in fields.items(where + ("images",), "images"):
        text = fields.text(where + ("images", i), "image")
        try:
            images.append(Label.parse(text, default_path=label_path))
        except ValueError as err:
            raise fields.doc.error(where + ("images", i), str(err)) from None
    volumes = tuple(_volume_mount(fields, label_path, where + ("volumes", i)) for i in fields.items(where + ("volumes",), "volumes"))
    files = fields.texts(where + ("files",), "files")
    for i, f in enumerate(files):
        _check_pod_file(fields, path, where + ("files", i), f)
    _check_pod_names(fields, where, images, volumes, files)
    return PodRule(
        label=Label(label_path, name),
        build_file=path,
        line=fields.doc.line(where),
        images=tuple(images),
        volumes=volumes,
        files=files,
        args=fields.texts(where + ("args",), "args"),
        environment=environment(fields, where + ("environment",)),
        shown=fields.doc.path,
        image_lines=tuple(fields.doc.line(where + ("images", i)) for i in range(len(images))),
        health=_health(fields, where + ("health",), images) if fields.at(where + ("health",)) is not None else None,
    )


def _health(fields: Fields, where, images: list[Label]) -> HealthCheck:
    """`health: {http: {port, path} | tcp: {port} | exec: [cmd, ...], timeout: seconds}`.

    `exec` runs in the pod's first app (its first image), which is what a
    pod with one image means; `timeout` defaults to 30 seconds.
    """
    spec = fields.mapping(where, HEALTH_KEYS, "health")
    kinds = [kind for kind in ("http", "tcp", "exec") if kind in spec]
    if len(kinds) != 1:
        raise fields.doc.error(where, "health needs exactly one of http, tcp or exec")
    kind = kinds[0]
    timeout = fields.integer(where + ("timeout",), "timeout", 1, MAX_TIMEOUT) if "timeout" in spec else DEFAULT_HEALTH_TIMEOUT
    if kind == "http":
        http = fields.mapping(where + ("http",), frozenset({"port", "path"}), "health.http")
        path = fields.text(where + ("http", "path"), "path") if "path" in http else "/"
        if not HTTP_PATH.match(path):
            raise fields.doc.error(where + ("http", "path"), f"path {quoted(path)} must start with '/' and hold no space (at most 2048 characters)")
        return HttpCheck(fields.integer(where + ("http", "port"), "port", 1, 65535), path, float(timeout))
    if kind == "tcp":
        fields.mapping(where + ("tcp",), frozenset({"port"}), "health.tcp")
        return TcpCheck(fields.integer(where + ("tcp", "port"), "port", 1, 65535), float(timeout))
    command = fields.texts(where + ("exec",), "exec")
    if not command or not all(command):
        raise fields.doc.error(where + ("exec",), "exec must be a non-empty command, like [/bin/check, -q]")
    if not images:
        raise fields.doc.error(where + ("exec",), "an exec health check runs in the pod's first image, and this pod has none")
    return ExecCheck(images[0].name, command, float(timeout))


def _check_pod_file(fields: Fields, build_file: Path, where, relative: str) -> None:
    """A pod file must be a regular file in the build file's folder, now.

    Checked while loading, so a missing file stops the release before any
    image is built, at the line that names it. It is copied (followed), so
    unlike a rootfs symlink a symlinked file must also resolve inside.
    """
    if not relative or relative.startswith("/") or ".." in relative.split("/") or relative.endswith("/"):
        raise fields.doc.error(where, f"file {quoted(relative)} must be a relative path to a file (no '..')")
    if not _inside_folder(build_file.parent, relative, follow_last=True):
        raise fields.doc.error(where, f"file {quoted(relative)} leaves the build file's folder through a symlink")
    if not os.path.isfile(build_file.parent / relative):
        raise fields.doc.error(where, f"file {quoted(relative)} is not a regular file in {build_file.parent.name or '.'}/")


def _volume_mount(fields: Fields, label_path: str, where) -> VolumeMount:
    spec = fields.mapping(where, VOLUME_KEYS, "a volume")
    for key in ("name", "label", "path"):
        if key not in spec:
            raise fields.doc.error(where, f"volume needs {quoted(key)}")
    try:
        label = Label.parse(fields.text(where + ("label",), "label"), default_path=label_path)
    except ValueError as err:
        raise fields.doc.error(where + ("label",), str(err)) from None
    return VolumeMount(
        name=fields.name(where + ("name",), check_ac_name, "volume name"),
        label=label,
        path=_absolute(fields, where + ("path",), "volume path"),
        read_only=fields.flag(where + ("read_only",), "read_only") if "read_only" in spec else True,
    )


def _check_pod_names(fields: Fields, where, images, volumes, files) -> None:
    """Images, volumes and files share the pod directory: names must not clash."""
    seen: dict[str, str] = {"pod.json": "pod.json"}
    entries = [(("images", i), img.name, f"image {img}") for i, img in enumerate(images)]
    entries += [(("volumes", i), v.name, f"volume {quoted(v.name)}") for i, v in enumerate(volumes)]
    entries += [(("files", i), posixpath.basename(f), f"file {quoted(f)}") for i, f in enumerate(files)]
    for sub, name, what in entries:
        if name in seen:
            raise fields.doc.error(where + sub, f"{what} clashes with {seen[name]} (same name {quoted(name)} in the pod)")
        seen[name] = what


def load_all(root: ReleaseRoot, found: list[tuple[Path, str]] | None = None) -> list[BuildFile]:
    """Every build file under `shipyard/` (`found` by `root.build_files()`), reporting the first mistake of each."""
    build_files, errors = [], []
    for path, label_path in root.build_files() if found is None else found:
        try:
            build_files.append(load_build_file(path, root.shown(path), label_path))
        except UserError as err:
            errors.append(err)
    if errors:
        raise UserErrors(errors)
    return build_files
