"""The installed-pod store of a machine: what `ops-onboard` manages under DIR.

`Store` is the front: it takes DIR's lock and hands each command to the
module that does it. Where to read on:

    layout.py     where things live under DIR (the layout diagram), the walk of pods/
    records.py    installed.json: what a version holds; what `list` shows
    checks.py     images against their ids, versions against their records; `verify`
    history.py    `current` and .history.json; `activate` and `rollback`
    install.py    `deploy`: the install transaction, and why a crash cannot half-install
    trust.py      `deploy --allowed-signers`: pod.json.sig checked before anything is written
    undeploy.py   `undeploy`: a version out, and the images only it used
    run.py        running versions under podman: `deploy` that runs, `start`, `stop`,
                  `rollback`, and why a crash cannot leave two versions running, or none
    ocilayout.py  each image's OCI layout, fetched blob by blob and checked
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ContractError
from ..core.fsops import sweep
from ..core.locks import exclusive
from ..core.names import Label
from . import checks, history, install, records, run
from . import undeploy as removal
from .layout import Layout
from .records import Installed

if TYPE_CHECKING:
    from .fetching import HttpOptions

__all__ = ["Installed", "Store"]

COMMIT_ATTEMPTS = 3  # a deploy prepares again when another command changed what it checked


class Store:
    """The pods installed under one DIR; every public method takes the lock."""

    def __init__(self, root: Path, lock_timeout: float = 300.0, http: HttpOptions | None = None,
                 say: Callable[[str], None] = lambda message: None, stop_timeout: float = 10.0,
                 allowed_signers: Path | None = None):
        self.root = Path(os.path.abspath(root))
        self.allowed_signers = allowed_signers  # deploy installs only pods signed by a key it allows (trust.py)
        self.layout = Layout(self.root)
        self.lock_timeout = lock_timeout
        self.http = http
        self.say = say
        self.stop_timeout = stop_timeout  # seconds a pod gets after SIGTERM before SIGKILL

    # -- paths (see layout.py) -----------------------------------------------

    @property
    def images(self) -> Path:
        return self.layout.images

    @property
    def pods(self) -> Path:
        return self.layout.pods

    def image_dir(self, image_id: str) -> Path:
        return self.layout.image_dir(image_id)

    def pod_dir(self, label: Label) -> Path:
        return self.layout.pod_dir(label)

    def version_dir(self, label: Label, version: str) -> Path:
        return self.layout.version_dir(label, version)

    # -- locking -----------------------------------------------------------

    def _make_root(self) -> None:
        if not self.root.is_dir():
            if os.path.lexists(self.root):
                # A file (or a dangling link) is not an empty store: `verify` must not call it intact.
                raise ContractError(f"{self.root} is not a directory")
            try:
                self.root.mkdir(parents=True, mode=0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise ContractError(f"cannot create {self.root}: {e.strerror}") from None

    @contextmanager
    def locked(self, create: bool = True) -> Iterator[bool]:
        """Hold DIR's lock; yields False (without locking) if DIR does not exist and `create` is off."""
        if not self.root.is_dir() and not os.path.lexists(self.root) and not create:
            yield False
            return
        self._make_root()
        with exclusive(self.root / ".lock", self.lock_timeout, self.say):
            try:
                sweep(self.root)  # what a killed command left; a live one's staging stays
            except OSError:
                pass  # a reader without write access: the next writer sweeps
            yield True

    def _require_installed(self, label: Label, version: str | None = None) -> list[str]:
        """The installed versions of `label`, oldest first; an error if none, or not `version`."""
        versions = self.layout.versions_of(label)
        if not versions:
            raise ContractError(f"{label} is not installed under {self.root}")
        if version is not None and version not in versions:
            raise ContractError(f"{label} has no installed version {version!r} (installed: {', '.join(versions)})")
        return versions

    # -- the commands ----------------------------------------------------------

    def deploy(self, spec: str, start: bool = False) -> str:
        """Install the pod `spec` names and make it current; returns what was done.

        Everything is fetched and checked without DIR's lock; the lock is held
        only to commit (see install.py), and, with `start`, to run the new
        version (made current only once healthy; see run.py)."""
        self._make_root()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            prepared = install.prepare(self.layout, spec, self.http, self.say, self.allowed_signers)
            try:
                with self.locked():
                    try:
                        done = install.commit(self.layout, prepared, make_current=not start)
                    except install.Changed as changed:
                        if attempt == COMMIT_ATTEMPTS:
                            raise ContractError(f"{changed} by another command, {attempt} times; "
                                                "deploy again") from None
                        self.say(f"{changed} by another command; checking again")
                        continue
                    if not start:
                        return done
                    pod = prepared.pod
                    version = run.installed_version(self.layout, pod.label, pod.version)
                    status, switched = run.ensure_running(self.layout, version, self.say,
                                                          stop_timeout=self.stop_timeout)
                    if not switched:
                        return f"{done}; it is current and already running healthy (pod {status.pod})"
                    return f"{done}; it is now current and running (pod {status.pod})"
            finally:
                prepared.discard()
        raise AssertionError("unreachable")

    def start(self, label: Label) -> str:
        """Run the current version of `label` (in place of any pod of the label)."""
        with self.locked(create=False) as exists:
            version = run.current_version(self.layout, label) if exists else None
            if version is None:
                raise ContractError(f"{label} has no current version under {self.root}")
            status, switched = run.ensure_running(self.layout, version, self.say, stop_timeout=self.stop_timeout)
            already = "" if switched else " already"
            return f"{label} {version.pod.version} is{already} running (pod {status.pod})"

    def stop(self, label: Label) -> str:
        with self.locked(create=False):
            removed = run.runner.stop(label, timeout=self.stop_timeout)
            return f"{label}: stopped {', '.join(removed)}" if removed else f"{label}: nothing was running"

    def status(self) -> list[dict]:
        """Each installed pod: label, current version, what podman runs of it, and whether healthy."""
        with self.locked(create=False) as exists:
            if not exists:
                return []
            labels = sorted({i.label for i in records.installed(self.layout)}, key=str)
            found = []
            for label in labels:
                version = run.current_version(self.layout, label)
                check = version.pod.health if version else None
                st = run.runner.status(label, health=check)
                found.append({"label": str(label), "current": version.pod.version if version else None,
                              "running": st.state == "running", "version": st.version,
                              "healthy": bool(st.healthy) and st.version == (version and version.pod.version),
                              "state": st.state, "pod": st.pod, "reason": st.reason})
            return found

    def render(self, label: Label, version: str | None = None) -> str:
        from .runtime.kube import render, to_yaml

        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            if version is None:
                v = run.current_version(self.layout, label)
                if v is None:
                    raise ContractError(f"{label} has no current version under {self.root}")
            else:
                self._require_installed(label, version)
                v = run.installed_version(self.layout, label, version)
            return to_yaml(render(v.pod, run.volumes(self.layout, v, create=False)))

    def installed(self) -> list[Installed]:
        with self.locked(create=False) as exists:
            return records.installed(self.layout) if exists else []

    def activate(self, label: Label, version: str) -> str:
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            self._require_installed(label, version)
            old = history.point_current(self.pod_dir(label), version)
            if old == version:
                return f"{label} {version} is already current"
            return f"{label}: current is now {version}" + (f" (was {old})" if old else "")

    def rollback(self, label: Label, runs: bool = True) -> str:
        """Make the previous version current; if the label's pod runs (and `runs`), run it first."""
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            self._require_installed(label)
            running = runs and run.runner.status(label).state != "absent"
            return run.rollback(self.layout, label, running, self.say, self.stop_timeout)

    def undeploy(self, label: Label, version: str, force: bool = False, runs: bool = True) -> str:
        """Remove a version; one podman runs (asked unless `runs` is off) only with `force`, stopped first."""
        with self.locked(create=False) as exists:
            if not exists:
                raise ContractError(f"{label} is not installed under {self.root}")
            self._require_installed(label, version)
            if runs and run.runner.status(label).version == version:
                if not force:
                    raise ContractError(f"{label} {version} is running; stop it first, or use --force")
                run.runner.stop(label, timeout=self.stop_timeout)
            return removal.undeploy(self.layout, label, version, force, self.say)

    def verify(self) -> list[str]:
        """Every problem with what is installed, one line each; [] when all is intact."""
        with self.locked(create=False) as exists:
            if not exists:
                return []
            return checks.verify(self.layout, self.allowed_signers)
