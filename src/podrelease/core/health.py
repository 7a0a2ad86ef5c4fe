"""How a pod says it is healthy: the `health` of a pod rule and of pod.json.

One of (pod.json's shape; `null` is no check)::

    {"http": {"port": 8080, "path": "/healthz"}, "timeout": 30}
    {"tcp": {"port": 5432}, "timeout": 30}
    {"exec": {"app": "frontend", "command": ["/bin/check", "-q"]}, "timeout": 30}

Plain data, shared by the release side (which writes it into pod.json) and
the host (`deploy.runtime.health` probes it). Imports only `core.errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PodJsonError
from .names import quoted

MAX_TIMEOUT = 3600
HTTP_PATH = re.compile(r"/[\x21-\x7e]{0,2047}\Z")  # printable, no space, bounded: it goes into the request line


@dataclass(frozen=True)
class HttpCheck:
    port: int
    path: str
    timeout: float

    def describe(self) -> str:
        return f"GET http://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class TcpCheck:
    port: int
    timeout: float

    def describe(self) -> str:
        return f"connect to 127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ExecCheck:
    app: str
    command: tuple[str, ...]
    timeout: float

    def describe(self) -> str:
        return f"{' '.join(self.command)!r} in app {quoted(self.app)}"


HealthCheck = HttpCheck | TcpCheck | ExecCheck


def _keys(value: object, required: tuple[str, ...], what: str) -> dict:
    if not isinstance(value, dict):
        raise PodJsonError(f"{what} must be an object")
    missing = [k for k in required if k not in value]
    if missing:
        raise PodJsonError(f"{what}: missing key {quoted(missing[0])}")
    unknown = sorted(k for k in value if k not in required)
    if unknown:
        raise PodJsonError(f"{what}: unknown key {quoted(unknown[0])}")
    return value


def _port(value: object, what: str) -> int:
    if type(value) is not int or not 0 < value < 65536:
        raise PodJsonError(f"{what}: {quoted(value)} is not a port number (1-65535)")
    return value


def parse_health(value: object, what: str = "health") -> HealthCheck | None:
    """The check pod.json's `health` declares (None for null); PodJsonError if misshapen."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PodJsonError(f"{what} must be an object or null")
    kinds = [k for k in ("http", "tcp", "exec") if k in value]
    if len(kinds) != 1:
        raise PodJsonError(f"{what} must have exactly one of 'http', 'tcp', 'exec'")
    kind = kinds[0]
    _keys(value, (kind, "timeout"), what)
    timeout = value["timeout"]
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_TIMEOUT:
        raise PodJsonError(f"{what}.timeout: {quoted(timeout)} is not a number of seconds in (0, {MAX_TIMEOUT}]")
    spec = value[kind]
    if kind == "http":
        _keys(spec, ("port", "path"), f"{what}.http")
        if not isinstance(spec["path"], str) or not HTTP_PATH.match(spec["path"]):
            raise PodJsonError(f"{what}.http.path: {quoted(spec['path'])} must start with '/' and hold no space (at most 2048 characters)")
        return HttpCheck(_port(spec["port"], f"{what}.http.port"), spec["path"], float(timeout))
    if kind == "tcp":
        _keys(spec, ("port",), f"{what}.tcp")
        return TcpCheck(_port(spec["port"], f"{what}.tcp.port"), float(timeout))
    _keys(spec, ("app", "command"), f"{what}.exec")
    command = spec["command"]
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise PodJsonError(f"{what}.exec.command must be a non-empty list of non-empty strings")
    if not isinstance(spec["app"], str) or not spec["app"]:
        raise PodJsonError(f"{what}.exec.app must name one of the pod's apps")
    return ExecCheck(spec["app"], tuple(command), float(timeout))


def health_json(check: HealthCheck | None) -> dict | None:
    """What `parse_health` reads back as `check`."""
    if check is None:
        return None
    timeout = int(check.timeout) if float(check.timeout).is_integer() else check.timeout
    if isinstance(check, HttpCheck):
        return {"http": {"port": check.port, "path": check.path}, "timeout": timeout}
    if isinstance(check, TcpCheck):
        return {"tcp": {"port": check.port}, "timeout": timeout}
    return {"exec": {"app": check.app, "command": list(check.command)}, "timeout": timeout}
