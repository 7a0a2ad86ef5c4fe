"""Is a started pod healthy: every app's container running and the pod's check passing.

The check a pod declares is pod.json's top-level `health`, one of::

    null                                                     no check
    {"http": {"port": 8080, "path": "/healthz"}, "timeout": 30}
    {"tcp": {"port": 5432}, "timeout": 30}
    {"exec": {"app": "frontend", "command": ["/bin/check", "-q"]}, "timeout": 30}

`http` passes on a 2xx or 3xx answer to `GET http://127.0.0.1:<port><path>`
(redirects not followed, no proxy), `tcp` when 127.0.0.1:<port> accepts a
connection, `exec` when the command exits 0 run by `podman exec` in the
app's container; `timeout` (seconds) bounds the wait for it to pass.

`wait` polls; it never changes the pod. It fails (`HealthError`, one line)
as soon as a container is not running, naming the app, its exit status and
the last lines of its log; or when the check has not passed by its timeout,
saying what the last probe saw and how each app's log ends. With no check,
a pod is healthy when every container is still running `settle` seconds
after it was started. A crash while waiting leaves the pod as it was.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Mapping

from ...core.errors import ContractError
from ...core.health import ExecCheck, HealthCheck, HttpCheck, TcpCheck
from .podman import Podman, PodmanError

PROBE_TIMEOUT = 2.0  # seconds one probe may take
MIN_PROBE = 1.0  # ... even at the end of the wait: `podman exec` alone takes ~0.15 s
POLL = 0.1  # seconds between probes
LOG_LINES = 5
MAX_LOG_LINE = 200


class HealthError(ContractError):
    """A pod that did not become healthy; one line, naming the app and how its log ends."""

    def __init__(self, message: str, app: str | None = None, log: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.app = app  # the app whose container failed, None for a check that timed out
        self.log = log or {}  # app -> its last log lines, as read


def _os_error(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).lower()


def probe(check: HealthCheck, podman: Podman, containers: Mapping[str, str],
          timeout: float = PROBE_TIMEOUT) -> str | None:
    """Run the check once: None if it passed, else what it saw (one short phrase)."""
    if isinstance(check, HttpCheck):
        conn = http.client.HTTPConnection("127.0.0.1", check.port, timeout=timeout)
        try:
            conn.request("GET", check.path, headers={"User-Agent": "podrelease-health"})
            status = conn.getresponse().status
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except (OSError, http.client.HTTPException) as e:
            return _os_error(e) if isinstance(e, OSError) else f"bad HTTP answer ({type(e).__name__})"
        finally:
            conn.close()
        return None if 200 <= status < 400 else f"HTTP {status}"
    if isinstance(check, TcpCheck):
        try:
            socket.create_connection(("127.0.0.1", check.port), timeout=timeout).close()
        except OSError as e:
            return _os_error(e)
        return None
    container = containers.get(check.app)
    if container is None:
        return f"the pod has no app {check.app!r}"
    try:
        status, line = podman.exec(container, check.command, timeout=timeout)
    except PodmanError as e:
        return str(e)
    return None if status == 0 else f"exit {status}: {line}"


def log_tail(podman: Podman, container: str, lines: int = LOG_LINES) -> list[str]:
    """The last lines of a container's log, each cut short; a failure to read it says so."""
    try:
        got = podman.logs(container, lines)
    except PodmanError as e:
        return [f"(log unreadable: {e})"]
    return [line if len(line) <= MAX_LOG_LINE else line[:MAX_LOG_LINE] + "..." for line in got]


def _log_phrase(lines: list[str]) -> str:
    return "log ends: " + " | ".join(lines) if lines else "log is empty"


def not_running(podman: Podman, containers: Mapping[str, str]) -> tuple[str, str] | None:
    """The first app whose container is not running, and why: (app, "exited with status 3")."""
    found = {c.get("Name"): c for c in podman.container_inspect(*containers.values())}
    for app, name in containers.items():
        info = found.get(name)
        state = info.get("State", {}) if info else {}
        if state.get("Status") == "running":
            continue
        if not info:
            return app, "has no container"
        status = state.get("Status") or "unknown"
        if status in ("exited", "stopped"):  # "stopped": exited, podman's cleanup not yet done
            why = f"exited with status {state.get('ExitCode')}"
        else:
            why = f"is {status}, not running"
        if state.get("Error"):
            why += f" ({state['Error']})"
        return app, why
    return None


def wait(podman: Podman, what: str, containers: Mapping[str, str], check: HealthCheck | None, *,
         settle: float = 3.0, poll: float = POLL, log_lines: int = LOG_LINES,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait until a pod is healthy; the seconds it took. `what` names the pod in messages
    (`//web:frontend 1.2.0`), `containers` maps each app to its container's name.

    HealthError if a container stops running first, or the check does not
    pass within its timeout (with no check: `settle` seconds of every
    container running).
    """
    start = clock()
    deadline = start + (check.timeout if check is not None else settle)
    last = "not probed"
    while True:
        down = not_running(podman, containers)
        if down is not None:
            app, why = down
            lines = log_tail(podman, containers[app], log_lines)
            raise HealthError(f"pod {what}: app {app!r} {why}; its {_log_phrase(lines)}", app, {app: lines})
        now = clock()
        if check is None:
            if now >= deadline:
                return now - start
        else:
            seen = probe(check, podman, containers, timeout=max(MIN_PROBE, min(PROBE_TIMEOUT, deadline - now)))
            if seen is None:
                return clock() - start
            last = seen
            if clock() >= deadline:
                apps = [check.app] if isinstance(check, ExecCheck) and check.app in containers else list(containers)
                logs = {app: log_tail(podman, containers[app], log_lines) for app in apps}
                tails = "; ".join(f"{app!r} {_log_phrase(lines)}" for app, lines in logs.items())
                raise HealthError(f"pod {what}: health check {check.describe()} did not pass within "
                                  f"{check.timeout:g}s (last: {last}); {tails}", None, logs)
        sleep(max(0.0, min(poll, deadline - clock())) or poll)
