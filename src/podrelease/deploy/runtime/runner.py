"""Start, stop and ask about one pod, by label, under podman: what the ops-onboard store calls.

    runner.start(pod, DIR / "pods/web/frontend/1.2.0")   # -> Status, or HealthError
    runner.status(Label.parse("//web:frontend"), health=check)
    runner.stop(Label.parse("//web:frontend"))

An installed version directory holds what `start` runs: `images/<image>/oci/`
(the image as an OCI layout, tagged with the image's version) and
`volumes/<volume>/` (mounted as host paths, so the directory must stay).

Invariants:

- at most one podman pod per label: every pod labelled with the label's
  `kube.pod_key` is removed before another is played, whatever its version;
  `stop` and `status` find the pod by that label alone;
- `start` loads images and renders the pod before it removes the running
  one, so the gap in service is podman's stop and play; a pod that does not
  become healthy is stopped but kept, so `podman logs` can still be read and
  `status` reports it, until the next `start` or `stop` removes it. Going back
  to the previous version is the caller's move (`start` it again);
- nothing is written outside podman's storage (but for the temporary
  symlink `podman.Podman.load_oci` pulls through).

A crash leaves: images loaded (named by id, reused by the next start), and
possibly the old pod removed before the new one was played, or a new pod
not yet checked, or (a `kube play` killed half-way) a pod or containers of
the new version podman has not labelled yet; the next `start` or `stop` of
the label puts that right, the next `start` also removing whatever holds
the names its play needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ...core.errors import ContractError
from ...core.names import Label
from ...core.podjson import PodJson
from . import health as healthmod
from .health import ExecCheck, HealthCheck, HealthError
from .kube import KEY_POD, KEY_VERSION, container_name, pod_key, pod_name, render, to_yaml
from .podman import Podman, PodmanError, image_name

STOP_TIMEOUT = 10.0  # seconds podman waits after SIGTERM before SIGKILL
SETTLE = 3.0  # seconds a pod without a check must keep every container running
_FROM_POD = object()


@dataclass(frozen=True)
class ContainerStatus:
    app: str  # the container's name inside the pod (the app's name, unless cut to 63)
    container: str  # podman's name for it: <pod name>-<app>
    state: str  # podman's: running, exited, created, stopped, ...
    exit_code: int | None  # for a container that ran and exited

    def to_json(self) -> dict:
        return {"app": self.app, "container": self.container, "state": self.state, "exit_code": self.exit_code}


@dataclass(frozen=True)
class Status:
    """A label's pod as podman has it now."""

    label: Label
    state: str  # "absent", "running" (every app), "degraded" (some apps), "exited" (none)
    pod: str | None = None  # podman's pod name
    version: str | None = None
    containers: tuple[ContainerStatus, ...] = ()
    healthy: bool | None = None  # True: running and the check passed (or there is none)
    reason: str | None = None  # why it is not healthy

    def to_json(self) -> dict:
        return {"label": str(self.label), "state": self.state, "pod": self.pod, "version": self.version,
                "healthy": self.healthy, "reason": self.reason,
                "containers": [c.to_json() for c in self.containers]}


def _apps(pod: PodJson) -> list[str]:
    return [entry["name"] for entry in pod.manifest.get("apps") or []]


def containers_of(pod: PodJson) -> dict[str, str]:
    """Each app of `pod` -> podman's name for its container."""
    name = pod_name(pod.label, pod.version)
    return {app: f"{name}-{container_name(app)}" for app in _apps(pod)}


def load_images(pod: PodJson, version_dir: Path, podman: Podman) -> list[str]:
    """Store each image the pod's apps run in podman (from `images/<image>/oci/`); the names loaded now."""
    used = {entry["image"]["id"] for entry in pod.manifest.get("apps") or []}
    loaded = []
    for image in pod.images:
        if image.id in used:
            name = image_name(image)
            if podman.load_oci(version_dir / "images" / image.name / "oci", image.version, name):
                loaded.append(name)
    return loaded


def volume_dirs(pod: PodJson, version_dir: Path) -> dict[str, str]:
    """Each host volume -> its installed directory, `volumes/<name>/`, which must exist."""
    dirs = {}
    for vol in pod.manifest.get("volumes") or []:
        if vol.get("kind") == "host":
            path = version_dir / "volumes" / vol["name"]
            if not path.is_dir():
                raise ContractError(f"pod {pod.label} {pod.version}: volume directory {path} is missing")
            dirs[vol["name"]] = str(path)
    return dirs


def start(pod: PodJson, version_dir: Path | str, *, health: HealthCheck | None | object = _FROM_POD,
          settle: float = SETTLE, stop_timeout: float = STOP_TIMEOUT, podman: Podman | None = None,
          volumes: Mapping[str, str] | None = None) -> Status:
    """Run `pod` from its installed `version_dir` in place of the label's pod; its Status once healthy.

    `health` defaults to the pod's own check (`pod.health`, once pod.json
    carries one). `volumes` maps host volumes to the directories mounted
    (default `volume_dirs`: the installed, read-only ones). HealthError when
    it does not become healthy (the pod is left stopped), PodmanError when
    podman fails.
    """
    podman = podman or Podman()
    check = pod.health if health is _FROM_POD else cast("HealthCheck | None", health)
    what = f"pod {pod.label} {pod.version}"
    containers = containers_of(pod)
    if isinstance(check, ExecCheck) and check.app not in containers:
        raise ContractError(f"{what}: the health check runs in app {check.app!r}, which the pod does not have")
    version_dir = Path(version_dir).resolve()
    load_images(pod, version_dir, podman)
    yaml_text = to_yaml(render(pod, volume_dirs(pod, version_dir) if volumes is None else volumes))
    stop(pod.label, timeout=stop_timeout, podman=podman)
    name = pod_name(pod.label, pod.version)
    # a play killed half-way may leave its pod or containers without the label `stop` finds them by
    if podman.pod_exists(name):
        podman.pod_remove(name, stop_timeout)
    podman.containers_remove(*containers.values())
    try:
        podman.kube_play(yaml_text)
    except PodmanError as e:
        down = _first_down(podman, name, containers)
        _stop_quietly(podman, name, stop_timeout)
        if down is not None:
            app, why = down
            raise HealthError(f"{what}: app {app!r} {why}: {e}", app) from None
        raise PodmanError(f"{what}: {e}") from None
    try:
        healthmod.wait(podman, f"{pod.label} {pod.version}", containers, check, settle=settle)
    except HealthError:
        _stop_quietly(podman, name, stop_timeout)
        raise
    return status(pod.label, health=None, podman=podman)


def _first_down(podman: Podman, name: str, containers: dict[str, str]) -> tuple[str, str] | None:
    """After a failed `kube play`: the app that did not start, if podman can still say."""
    try:
        return healthmod.not_running(podman, containers) if podman.pod_exists(name) else None
    except PodmanError:
        return None  # a container that was never created: the play's own error says more


def _stop_quietly(podman: Podman, name: str, timeout: float) -> None:
    """Stop a pod that failed; an error doing so must not hide why it failed (the next start removes it)."""
    try:
        podman.pod_stop(name, timeout)
    except PodmanError:
        pass


def stop(label: Label, *, timeout: float = STOP_TIMEOUT, podman: Podman | None = None) -> list[str]:
    """Stop and remove the label's pod (any version, and any stray one); the pod names removed."""
    podman = podman or Podman()
    removed = []
    for found in podman.pods(KEY_POD, pod_key(label)):
        podman.pod_remove(found["Name"], timeout)
        removed.append(found["Name"])
    return removed


def status(label: Label, *, health: HealthCheck | None = None, podman: Podman | None = None) -> Status:
    """The label's pod now; with `health`, a running pod is probed once (no waiting)."""
    podman = podman or Podman()
    found = sorted(podman.pods(KEY_POD, pod_key(label)), key=lambda p: p.get("Created", ""))
    if not found:
        return Status(label, "absent", healthy=False, reason="no pod")
    pod = found[-1]
    name = pod["Name"]
    names = [c["Names"] for c in pod.get("Containers") or [] if c.get("Id") != pod.get("InfraId")]
    inspected = {c.get("Name"): c for c in podman.container_inspect(*names)}
    containers = []
    version = None
    for cname in names:
        info = inspected.get(cname, {})
        state = info.get("State", {})
        version = version or (info.get("Config", {}).get("Annotations") or {}).get(KEY_VERSION)
        exited = state.get("Status") in ("exited", "stopped")
        containers.append(ContainerStatus(cname.removeprefix(f"{name}-"), cname, state.get("Status", "unknown"),
                                          state.get("ExitCode") if exited else None))
    running = [c for c in containers if c.state == "running"]
    state = "running" if containers and len(running) == len(containers) else "degraded" if running else "exited"
    healthy, reason = state == "running", None
    if not healthy:
        down = next(c for c in containers if c.state != "running") if containers else None
        reason = f"app {down.app!r} is {down.state}" if down else "the pod has no containers"
    elif health is not None:
        by_app = {c.app: c.container for c in containers}
        if isinstance(health, ExecCheck):
            by_app[health.app] = f"{name}-{container_name(health.app)}"
        reason = healthmod.probe(health, podman, by_app)
        healthy = reason is None
        reason = reason and f"health check {health.describe()}: {reason}"
    if len(found) > 1:
        reason = f"{reason + '; ' if reason else ''}{len(found) - 1} older pod(s) of the label still exist"
    return Status(label, state, name, version, tuple(containers), healthy, reason)
