"""A real registry for tests: Debian's docker-registry (CNCF distribution) on 127.0.0.1 with htpasswd auth.

Clients reach it the way podman users configure theirs: an auth file as
`podman login` writes it (`REGISTRY_AUTH_FILE`) and a registries.conf that
marks it insecure (plain HTTP, `CONTAINERS_REGISTRIES_CONF`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from httpservers import free_port, wait_for_port

USER = "ci"
PASSWORD = "s3cret-for-tests"


def serve(config: Path, port: int) -> subprocess.Popen:
    """docker-registry serving `config`, once it listens on `port`."""
    registry = shutil.which("docker-registry")
    assert registry, "docker-registry is missing: setup.sh installs it (Debian package docker-registry)"
    # docker-registry reads REGISTRY_* variables as settings: a client's REGISTRY_AUTH_FILE is not one
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    process = subprocess.Popen([registry, "serve", str(config)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process


def halt(process: subprocess.Popen | None) -> None:
    if process is not None:
        process.kill()
        process.wait()


class Registry:
    """One docker-registry process; `env(prefix)` is what a runner using it sets."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
        (folder / "htpasswd").write_text(htpasswd.stdout)
        (folder / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}'}}\n"
            f"auth: {{htpasswd: {{realm: podrelease-tests, path: {folder / 'htpasswd'}}}}}\n"
        )
        self.hosts: list[str] = []
        self.allow(self.host)
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = serve(self.folder / "config.yml", self.port)

    def stop(self) -> None:
        halt(self.process)
        self.process = None

    def allow(self, host: str, password: str = PASSWORD) -> None:
        """Mark `host` insecure and log in to it (as `podman login` would)."""
        self.hosts.append(host)
        conf = "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n\n' for h in self.hosts)
        (self.folder / "registries.conf").write_text(conf)
        auth_path = self.folder / "auth.json"
        auths = json.loads(auth_path.read_text())["auths"] if auth_path.exists() else {}
        auths[host] = {"auth": base64.b64encode(f"{USER}:{password}".encode()).decode()}
        auth_path.write_text(json.dumps({"auths": auths}))

    def env(self, prefix: str, host: str | None = None, auth_file: Path | None = None) -> dict[str, str]:
        return {
            "PODRELEASE_REGISTRY": f"{host or self.host}/{prefix}",
            "CONTAINERS_REGISTRIES_CONF": str(self.folder / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(auth_file or self.folder / "auth.json"),
        }

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """skopeo against this registry, with its auth file and registries.conf."""
        return subprocess.run(
            ["skopeo", "--registries-conf", str(self.folder / "registries.conf"), *args],
            env={"REGISTRY_AUTH_FILE": str(self.folder / "auth.json"), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=check, timeout=120,
        )

    def tags(self, repository: str) -> set[str]:
        done = self.skopeo("list-tags", f"docker://{self.host}/{repository}", check=False)
        return set(json.loads(done.stdout)["Tags"]) if done.returncode == 0 else set()

    def digest(self, repository: str, tag: str) -> str:
        raw = self.skopeo("inspect", "--raw", f"docker://{self.host}/{repository}:{tag}").stdout.encode()
        return "sha256:" + hashlib.sha256(raw).hexdigest()


class DyingProxy:
    """A TCP proxy to the registry that dies (closes everything, stops listening)
    once clients have sent it `limit` bytes: a registry that goes away mid-push."""

    def __init__(self, target_port: int, limit: int):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.target_port = target_port
        self.limit = limit
        self.sent = 0
        self.dead = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted:
                    self.sent += len(data)
                    if self.sent > self.limit:
                        self.die()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def die(self) -> None:
        self.dead.set()
        self.listener.close()
        for s in self.sockets:
            try:  # shutdown first: close alone would not wake a pipe thread blocked reading it
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
