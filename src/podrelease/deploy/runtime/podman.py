"""The podman command line: every call bounded by a timeout, every failure one line.

The command is `shlex.split($PODRELEASE_PODMAN)`, `podman` by default, so a
host can add global options (`--root`, `--runroot`, `--storage-driver`); give
them as absolute paths, because loading an image runs podman in a temporary
working directory (see `Podman.load_oci`).

Invariants:

- a podman that fails, hangs past its timeout or is missing raises
  `PodmanError` (a `ContractError`) whose message is one line: the podman
  subcommand, its exit status and podman's last meaningful stderr line;
- a podman killed at its timeout may leave what it was doing half done
  (a pod created but not started, an image pulled but not tagged); every name
  used here is deterministic, so the next call finds and finishes or removes it;
- an image is stored under `image_name(image)`, derived from the image's id:
  a name that exists is the image, so loading it again is one `image exists`.

A crash of this process leaves nothing beyond what podman itself left: this
module writes no file except a symlink in a temporary directory it removes.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.errors import ContractError
from ...core.podjson import ImageRef

ENV = "PODRELEASE_PODMAN"
TIMEOUT = 60.0  # seconds for a call that does not say otherwise
LOAD_TIMEOUT = 600.0  # copying a big image into podman's storage
STOP_GRACE = 30.0  # seconds a stop may take beyond the stop timeout it asks of podman
IMAGE_PREFIX = "localhost/podrelease/"
LOAD_LINK = "layout"  # the symlink `load_oci` pulls through, so the pull's own name is fixed
LOAD_NAME = f"localhost/{LOAD_LINK}:latest"  # the name podman gives what it pulls from `oci:layout:<tag>`
MAX_LINE = 300  # characters of podman's stderr kept in a message
GENERIC = re.compile(r"(Error: )?failed to start \d+ containers?\Z")


class PodmanError(ContractError):
    """Podman failed, timed out or is not installed; the message is one line."""


def image_name(image: ImageRef) -> str:
    """`localhost/podrelease/<image name>:<16 hex of its id>`: one name per image id.

    An AC name is a valid reference path component; one longer than a
    reference allows (255 characters in all) is cut and given a hash.
    """
    name = image.name
    if len(name) > 200:
        name = name[:180].rstrip("-") + "-" + hashlib.sha256(image.name.encode()).hexdigest()[:16]
    return f"{IMAGE_PREFIX}{name}:{image.digest[:16]}"


def podman_command() -> list[str]:
    """The podman command line (`$PODRELEASE_PODMAN`, split like a shell does)."""
    text = os.environ.get(ENV, "podman")
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise PodmanError(f"{ENV}={text!r}: {e}") from None
    if not argv:
        raise PodmanError(f"{ENV} is set but empty")
    return argv


def last_line(stderr: str) -> str:
    """Podman's most telling stderr line: the last one that is not a logrus warning.

    `kube play` ends with a summary ("failed to start 1 containers"); the
    line before it says why, so both are kept.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("time=")] or lines
    if not errors:
        return "(no message)"
    picked = errors[-1]
    if GENERIC.match(picked) and len(errors) > 1:
        picked = f"{errors[-2].lstrip('[').rstrip(']')} ({picked.removeprefix('Error: ')})"
    picked = picked.removeprefix("Error: ")
    return picked if len(picked) <= MAX_LINE else picked[:MAX_LINE] + "..."


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child must not dlopen


def _die_with_parent() -> None:
    """In the podman child: be killed when ops-onboard dies (PR_SET_PDEATHSIG).

    A SIGKILLed ops-onboard releases DIR's lock at once; a podman it started
    must not go on (playing a pod, say) behind the back of the next command
    that takes the lock. The containers podman started are not its children
    in that sense (conmon is reparented) and keep running.
    """
    try:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except AttributeError:  # no prctl: not Linux
        pass


class Podman:
    """One podman command line; each method is one podman call (or a few, said so)."""

    def __init__(self, argv: Sequence[str] | None = None):
        self.argv = list(argv) if argv is not None else podman_command()

    def run(self, *args: str, timeout: float = TIMEOUT, input: str | None = None, cwd: str | None = None,
            check: bool = True, merge: bool = False) -> subprocess.CompletedProcess:
        """Run `podman <args>`; output is text. `merge` sends stderr into stdout, in order."""
        what = "podman " + " ".join(a for a in args[:2] if not a.startswith("-"))
        try:
            proc = subprocess.run(
                [*self.argv, *args], input=input, cwd=cwd, timeout=timeout, text=True, errors="replace",
                preexec_fn=_die_with_parent,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            )
        except FileNotFoundError:
            raise PodmanError(f"{self.argv[0]}: command not found (set {ENV} to the podman command)") from None
        except subprocess.TimeoutExpired:
            raise PodmanError(f"{what}: no answer within {timeout:g}s") from None
        if check and proc.returncode != 0:
            message = proc.stdout if merge else proc.stderr
            raise PodmanError(f"{what}: exit {proc.returncode}: {last_line(message or '')}")
        return proc

    def _json(self, *args: str) -> Any:
        out = self.run(*args).stdout
        try:
            return json.loads(out or "null")
        except ValueError:
            raise PodmanError(f"podman {' '.join(args[:2])}: output is not JSON: {out[:80]!r}") from None

    # images

    def image_exists(self, name: str) -> bool:
        return self._exists("image", name)

    def load_oci(self, layout: Path, tag: str, name: str, timeout: float = LOAD_TIMEOUT) -> bool:
        """Store the image tagged `tag` in the OCI layout `layout` as `name`; False if already there.

        `podman pull oci:<path>:<tag>` names what it pulls after the path
        (`localhost/<path>:latest`), which fails for a path with capitals or
        longer than a reference: so the pull goes through the relative symlink
        `layout` in a fresh temporary directory (its working directory), then
        the image is tagged `name` and the fixed pull name dropped. A crash
        in between leaves an image named `localhost/layout:latest` or only
        by id, which the next load tags; layers already stored are not copied
        again.
        """
        if self.image_exists(name):
            return False
        for required in ("oci-layout", "index.json"):
            if not (layout / required).is_file():
                raise PodmanError(f"{layout}: not an OCI image layout (no {required})")
        with tempfile.TemporaryDirectory(prefix="podrelease-load-") as tmp:
            os.symlink(os.path.abspath(layout), os.path.join(tmp, LOAD_LINK))
            out = self.run("pull", "--quiet", f"oci:{LOAD_LINK}:{tag}", cwd=tmp, timeout=timeout).stdout
        ids = out.split()
        if not ids:
            raise PodmanError(f"podman pull oci:{layout}:{tag}: printed no image id")
        self.run("tag", ids[-1], name)
        self.run("untag", ids[-1], LOAD_NAME, check=False)
        return True

    # pods

    def kube_play(self, yaml_text: str, timeout: float = 120.0) -> None:
        """Create and start the pod the YAML describes (from stdin: nothing is written)."""
        self.run("kube", "play", "--quiet", "-", input=yaml_text, timeout=timeout)

    def pod_exists(self, name: str) -> bool:
        return self._exists("pod", name)

    def pod_inspect(self, name: str) -> dict | None:
        """`podman pod inspect` of one pod, or None when there is no such pod."""
        if not self.pod_exists(name):
            return None
        doc = self._json("pod", "inspect", name)
        if isinstance(doc, list):  # podman 5 answers a list, podman 4 one object
            doc = doc[0] if doc else None
        return doc if isinstance(doc, dict) else None

    def pods(self, label: str, value: str) -> list[dict]:
        """Every pod labelled `label=value` (`podman pod ps` JSON: Name, Status, Labels, Containers)."""
        doc = self._json("pod", "ps", "--filter", f"label={label}={value}", "--format", "json")
        return [p for p in doc or [] if isinstance(p, dict)]

    def pod_stop(self, name: str, timeout: float = 10.0) -> None:
        """Stop a pod: SIGTERM (the image's stop signal), SIGKILL after `timeout`; absent is fine."""
        self.run("pod", "stop", "--ignore", "--time", str(int(timeout)), name, timeout=timeout + STOP_GRACE)

    def pod_remove(self, name: str, timeout: float = 10.0) -> None:
        """Stop (as `pod_stop`) and remove a pod and its containers; absent is fine.

        Two calls: `pod rm --force` of a running pod (podman 4.3) takes about
        3.5 s beyond its stop timeout, `pod stop` then `pod rm` does not.
        """
        self.pod_stop(name, timeout)
        self.run("pod", "rm", "--force", "--ignore", "--time", "0", name, timeout=STOP_GRACE)

    # containers

    def containers_remove(self, *names: str) -> None:
        """Remove containers by name, running or not; absent is fine."""
        if names:
            self.run("rm", "--force", "--ignore", "--time", "0", *names, timeout=STOP_GRACE)

    def container_inspect(self, *names: str) -> list[dict]:
        """`podman container inspect` of the containers named (all must exist)."""
        if not names:
            return []
        doc = self._json("container", "inspect", *names)
        return [c for c in doc or [] if isinstance(c, dict)]

    def logs(self, container: str, lines: int = 10) -> list[str]:
        """The last `lines` lines a container wrote, stdout and stderr as they came."""
        out = self.run("logs", "--tail", str(lines), container, merge=True).stdout
        return out.splitlines()[-lines:] if lines > 0 else []

    def exec(self, container: str, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        """Run `argv` in a running container: its exit status and its output's last line.

        Exit status 125-127 is podman's own failure (no such container, not
        running, command not found); a timeout raises `PodmanError`.
        """
        proc = self.run("exec", container, *argv, timeout=timeout, check=False, merge=True)
        return proc.returncode, last_line(proc.stdout or "")

    def _exists(self, kind: str, name: str) -> bool:
        proc = self.run(kind, "exists", name, check=False)
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        raise PodmanError(f"podman {kind} exists: exit {proc.returncode}: {last_line(proc.stderr or '')}")
