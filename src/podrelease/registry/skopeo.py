"""The registry client for every transfer: skopeo, the containers project's own.

podrelease never moves a blob or writes to a registry itself. skopeo brings
what a registry client must get right and podman users already configure:
credentials from the containers auth file that `podman login` writes
(`REGISTRY_AUTH_FILE`, then `$XDG_RUNTIME_DIR/containers/auth.json`, then
`~/.docker/config.json`), token and basic auth, plain HTTP only for
registries marked `insecure` in registries.conf, retries, and digests
checked on every blob it moves. Artifacts (the ACI companion, pods,
volumes) are OCI manifests too, so skopeo moves them the same way, with
`--preserve-digests` so nothing is recompressed: a digest computed here is
the digest the registry holds.

skopeo is called as the command in `PODRELEASE_SKOPEO` (default `skopeo`).
skopeo 1.9 reads registries.conf only from its default place, so
`CONTAINERS_REGISTRIES_CONF` is handed to it as `--registries-conf`.

The two cheap reads a warm run makes by the dozen, tag lists and
manifests, go over HTTP where they can (`distribution`), and come here
otherwise.

Every failure is a RegistryError of one line: the cause skopeo reports,
put in words a release engineer acts on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

from ..core.errors import RegistryError

QUERY_TIMEOUT = 60  # seconds for a manifest or a tag list
COPY_TIMEOUT = 3600  # seconds for one copy
NOT_FOUND = ("manifest unknown", "not found", "404", "name unknown")
MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
SERVER_ERROR = re.compile(r"\b5\d\d\b|Internal Server Error")
QUERY_ATTEMPTS = 4
QUERY_BACKOFF = 0.1  # seconds before the second attempt; doubled before each next one


def _reason(stderr: str) -> str:
    """skopeo's own message, without its log decoration."""
    messages = MESSAGE.findall(stderr)
    text = messages[-1].encode().decode("unicode_escape", errors="replace") if messages else stderr.strip()
    return " ".join(text.split()) or "failed"


def explain(host: str, stderr: str) -> str:
    """One line on why a registry call failed."""
    reason = _reason(stderr)
    lowered = reason.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "invalid username/password" in lowered:
        return f"registry {host} refused our credentials (podman login {host} writes them): {reason}"
    if "denied" in lowered:
        return f"registry {host} denied access: {reason}"
    if "http response to https client" in lowered:
        return (f"registry {host} speaks plain HTTP: mark it insecure in registries.conf "
                f"(CONTAINERS_REGISTRIES_CONF) to use it")
    if any(word in lowered for word in ("connection refused", "no such host", "i/o timeout", "connection reset",
                                        "eof", "network is unreachable", "context deadline exceeded")):
        return f"registry {host} is unreachable: {reason}"
    return f"registry {host}: {reason}"


def _not_found(stderr: str) -> bool:
    reason = _reason(stderr).lower()
    return any(word in reason for word in NOT_FOUND) and "unauthorized" not in reason


class Skopeo:
    """skopeo as this process runs it: the command, and the global flags the environment asks for."""

    def __init__(self, host: str):
        self.host = host
        self.command = shlex.split(os.environ.get("PODRELEASE_SKOPEO", "skopeo"))
        conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
        if conf:
            self.command += ["--registries-conf", conf]

    def _run(self, args: list[str], timeout: int, show_progress: bool = False) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [*self.command, "--command-timeout", f"{timeout}s", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if show_progress else subprocess.PIPE,
                timeout=timeout + 30,
                check=False,
            )
        except FileNotFoundError:
            raise RegistryError(f"{self.command[0]}: not found; install skopeo (Debian package skopeo)") from None
        except subprocess.TimeoutExpired:
            raise RegistryError(f"registry {self.host}: no answer within {timeout} s") from None

    def _query(self, args: list[str]) -> subprocess.CompletedProcess:
        """A read, retried while the registry answers 5xx (distribution does while racing writers update a tag)."""
        for attempt in range(QUERY_ATTEMPTS):
            done = self._run(args, QUERY_TIMEOUT)
            if done.returncode == 0 or not SERVER_ERROR.search(done.stderr.decode(errors="replace")):
                return done
            time.sleep(QUERY_BACKOFF * 2**attempt)
        return done

    def manifest(self, reference: str) -> bytes | None:
        """The raw manifest `docker://reference` names, or None if there is none."""
        done = self._query(["inspect", "--raw", f"docker://{reference}"])
        if done.returncode == 0:
            return done.stdout
        stderr = done.stderr.decode(errors="replace")
        if _not_found(stderr):
            return None
        raise RegistryError(explain(self.host, stderr))

    def tags(self, repository: str) -> set[str]:
        """Every tag of a repository; none if the repository does not exist yet."""
        done = self._query(["list-tags", f"docker://{repository}"])
        if done.returncode == 0:
            try:
                tags = json.loads(done.stdout).get("Tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"registry {self.host}: skopeo list-tags printed no JSON") from None
            return {tag for tag in tags if isinstance(tag, str)}
        stderr = done.stderr.decode(errors="replace")
        if _not_found(stderr):
            return set()
        raise RegistryError(explain(self.host, stderr))

    def copy(self, source: str, destination: str) -> None:
        """`skopeo copy --preserve-digests`; progress on a terminal, nothing otherwise."""
        show = sys.stderr.isatty()
        args = ["copy", "--preserve-digests", *([] if show else ["--quiet"]), source, destination]
        done = self._run(args, COPY_TIMEOUT, show_progress=show)
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace") if done.stderr else "copy failed"
            raise RegistryError(explain(self.host, stderr))
