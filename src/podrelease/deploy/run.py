"""Running installed versions: `deploy` that runs, `start`, `stop`, `rollback`, `status`.

The state is split in two: `current` (a symlink under DIR, see history.py)
says which version should run; podman says what runs. Everything here
happens under DIR's lock, and every podman pod of a label is found by the
label alone (`runtime.kube.pod_key`), whatever its version.

Invariant, at every instant of a command and so after a crash or SIGKILL at
any point: `current` names a complete installed version, and at most one pod
of the label exists (`runner.start` removes every pod of the label before it
plays one). After the next `ops-onboard start LABEL` (or a deploy), the
version `current` names is running, and no other: never neither, never two
answering on one port.

Why the order of a switch (deploy, rollback) gives that:

1. the new version is installed, not current (install.py's transaction);
2. the running pod is stopped and the new one played (`runner.start`);
3. the new pod is waited on until healthy;
4. only then is `current` switched to it (one rename).

A crash before 4 leaves `current` on the old version: whatever runs (the
old pod, nothing, or the new pod not yet switched to) is replaced by the old
version at the next `start`. A crash after 4 leaves the new version current
and running. A failure at 2 or 3 is handled at once: the new pod is
stopped, the old version (still current) is started again, and the command
fails naming the container that failed, with the end of its log.

A podman that ops-onboard started dies with it (`podman._die_with_parent`),
so nothing plays a pod behind the back of the next command once the lock is
free.

Volumes a pod manifest marks `readOnly: false` are mounted from a writable
copy, `DIR/data/<label_path>/<pod>/<volume>/`, made once from the installed
volume (copied aside, then renamed into place, so it exists whole or not at
all) and kept across versions: data a pod writes survives its upgrades.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ContractError
from ..core.names import Label
from ..core.podjson import PodJson
from .history import point_current, read_history, roll_back
from .layout import Layout, current, read_pod
from .runtime import runner
from .runtime.health import HealthError
from .runtime.podman import Podman

DATA = "data"


class RunError(ContractError):
    """A version that did not run healthy: one line, then `details` (the end of the failing log)."""

    def __init__(self, message: str, details: list[str]):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Version:
    """One installed version, read back from DIR."""

    pod: PodJson
    path: Path


def installed_version(layout: Layout, label: Label, version: str) -> Version:
    path = layout.version_dir(label, version)
    pod = read_pod(path)
    if pod is None:
        raise ContractError(f"{label} {version}: pod.json under {path} is missing or damaged (see 'verify')")
    return Version(pod, path)


def current_version(layout: Layout, label: Label) -> Version | None:
    version = current(layout.pod_dir(label))
    return installed_version(layout, label, version) if version is not None else None


def volumes(layout: Layout, v: Version, create: bool = True) -> dict[str, str]:
    """Each host volume -> the directory mounted: the installed one, or the writable copy
    (made now if missing, unless `create` is off: `render` changes nothing)."""
    dirs = runner.volume_dirs(v.pod, v.path)
    for vol in v.pod.manifest.get("volumes") or []:
        if vol.get("kind") == "host" and vol.get("readOnly") is False:
            name = vol["name"]
            copy = layout.root / DATA / v.pod.label.join() / name
            dirs[name] = str(writable_copy(layout, v.pod.label, name, Path(dirs[name])) if create else copy)
    return dirs


def writable_copy(layout: Layout, label: Label, name: str, installed: Path) -> Path:
    """`DIR/data/<label_path>/<pod>/<volume>/`, copied from `installed` the first time."""
    target = layout.root / DATA / label.join() / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-copy-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(installed, tmp, symlinks=True)
    os.chmod(tmp, 0o755)
    os.rename(tmp, target)
    return target


def _runnable(v: Version) -> None:
    used = {entry["image"]["id"] for entry in v.pod.manifest.get("apps") or []}
    for image in v.pod.images:
        if image.id in used and image.oci is None:
            raise ContractError(f"{v.pod.label} {v.pod.version}: image {image.name} was released without an "
                                "OCI layout; it is installed but cannot be started (release it again)")


def start_version(layout: Layout, v: Version, podman: Podman | None = None,
                  stop_timeout: float = runner.STOP_TIMEOUT) -> runner.Status:
    """Run `v` in place of whatever pod of its label runs; its status once healthy."""
    _runnable(v)
    return runner.start(v.pod, v.path, volumes=volumes(layout, v), podman=podman, stop_timeout=stop_timeout)


def _failure(v: Version, e: ContractError, podman: Podman | None) -> tuple[str, list[str]]:
    """The one line naming the failing container, and the last lines of its log."""
    containers = runner.containers_of(v.pod)
    if isinstance(e, HealthError) and e.app is not None:
        container = containers.get(e.app, e.app)
        lines = e.log.get(e.app) or []
        if not lines:
            from .runtime.health import log_tail

            lines = log_tail(podman or Podman(), container)
        return f"container {container}: {e}", [f"{container}: {line}" for line in lines]
    details = [f"{containers.get(app, app)}: {line}" for app, log in (getattr(e, "log", None) or {}).items()
               for line in log]
    return str(e), details


def switch(layout: Layout, v: Version, say: Callable[[str], None], podman: Podman | None = None,
           make_current: Callable[[], object] | None = None,
           stop_timeout: float = runner.STOP_TIMEOUT) -> runner.Status:
    """Run `v`, then make it current (`make_current`, default `point_current`); on failure, back.

    See the module docstring for why this order is crash safe.
    """
    _runnable(v)  # refused before anything running is touched
    pod_dir = layout.pod_dir(v.pod.label)
    old = current_version(layout, v.pod.label)
    try:
        status = start_version(layout, v, podman, stop_timeout)
    except ContractError as e:
        line, details = _failure(v, e, podman)
        try:
            runner.stop(v.pod.label, podman=podman, timeout=0)
        except ContractError:
            pass
        if old is not None and old.pod.version != v.pod.version:
            try:
                start_version(layout, old, podman, stop_timeout)
                line += f"; {old.pod.version} is current and running again"
            except ContractError as again:
                line += f"; {old.pod.version} is current but did not start again either: {again}"
        raise RunError(line, details) from None
    if make_current is not None:
        make_current()
    else:
        point_current(pod_dir, v.pod.version)
    return status


def ensure_running(layout: Layout, v: Version, say: Callable[[str], None], podman: Podman | None = None,
                   stop_timeout: float = runner.STOP_TIMEOUT) -> tuple[runner.Status, bool]:
    """`switch` to `v` unless it is current and its pod already runs healthy; (status, switched)."""
    if current(layout.pod_dir(v.pod.label)) == v.pod.version:
        status = runner.status(v.pod.label, health=v.pod.health, podman=podman)
        if status.version == v.pod.version and status.state == "running" and status.healthy:
            return status, False
    return switch(layout, v, say, podman, stop_timeout=stop_timeout), True


def rollback_target(layout: Layout, label: Label) -> str | None:
    """The version `rollback` would go back to (as `history.roll_back` picks it), or None."""
    pod_dir = layout.pod_dir(label)
    now = current(pod_dir)
    installed = layout.versions_of(label)
    for candidate in reversed(read_history(pod_dir)):
        if candidate != now and candidate in installed:
            return candidate
    return None


def rollback(layout: Layout, label: Label, running: bool, say: Callable[[str], None],
             stop_timeout: float = runner.STOP_TIMEOUT) -> str:
    """Go back to the previous version; run it first if the label's pod was running."""
    pod_dir = layout.pod_dir(label)
    was = current(pod_dir)
    target = rollback_target(layout, label)
    if target is None:
        raise ContractError(f"{label}: no earlier version to roll back to (current: {was or 'none'})")
    if running:
        switch(layout, installed_version(layout, label, target), say,
               make_current=lambda: roll_back(pod_dir, layout.versions_of(label)), stop_timeout=stop_timeout)
    else:
        roll_back(pod_dir, layout.versions_of(label))
    how = " and running" if running else ""
    return f"{label}: rolled back to {target}{how}" + (f" (was {was})" if was else "")
