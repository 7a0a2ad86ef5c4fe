"""A real release root whose pod serves a page with busybox httpd, released by the real doit.

`released_httpd(where, port)` writes the sources and runs `doit bundle:...`
once for every version: 1.0.0 and 2.0.0 serve their own `index.html` (the
`www` volume's version), 3.0.0 passes httpd an option it refuses, so its app
exits at start. Each version's bundle is at `bundles(root)[version]`.

`onboard(...)` runs the installed `ops-onboard` for a host with podman:
without OPS_ONBOARD_NO_START (which tests/conftest.py sets for the older
tests) and with a short stop timeout (busybox httpd as PID 1 ignores
SIGTERM, so every stop waits for the SIGKILL).
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from podrelease.core.names import Label
from podrelease.deploy.runtime import runner
from podrelease.deploy.runtime.podman import Podman

from conftest import doit
from hostile import OPS_ONBOARD
from podmanhelpers import free_port, missing_tools, podman_env  # noqa: F401 (fixtures)

LABEL = "//web:frontend"
VERSIONS = ("1.0.0", "2.0.0", "3.0.0")
BAD = "3.0.0"
STOP = "1"  # --stop-timeout for the tests

BUILD_YAML = """\
images:
  httpd:
    command:
      - sh
      - -c
      - >-
        umask 022 && mkdir -p "$ROOTFS/bin" "$ROOTFS/srv/www" && cp /bin/busybox "$ROOTFS/bin/busybox" &&
        ln -s busybox "$ROOTFS/bin/sh" && ln -s busybox "$ROOTFS/bin/httpd"
    app:
      exec: [/bin/httpd, -f, -p, "127.0.0.1:{port}", -h, /srv/www]
pods:
  frontend:
    images: [httpd]
    volumes:
      - {{name: www, label: //web:www, path: /srv/www}}
      - {{name: state, label: //web:state, path: /var/state, read_only: false}}
    health: {{http: {{port: {port}, path: /}}, timeout: 20}}
"""


def page(version: str) -> bytes:
    return f"<h1>frontend {version}</h1>\n".encode()


def _tarball(path: Path, name: str, data: bytes) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def released_httpd(root: Path, port: int) -> Path:
    """Write the release root at `root`, release and bundle every version; returns `root`."""
    (root / "shipyard/web").mkdir(parents=True)
    (root / "dodo.py").write_text("from podrelease.tasks import *  # noqa: F401,F403\n")
    (root / "shipyard/web/build.yaml").write_text(BUILD_YAML.format(port=port))
    _tarball(root / "volumes/web/state/1.0.0/state.tar.gz", "seed", b"seed\n")
    home = root / "channels/prod/web/frontend"
    home.mkdir(parents=True)
    for version in VERSIONS:
        www = "2.0.0" if version == BAD else version
        _tarball(root / f"volumes/web/www/{www}/www.tar.gz", "index.html", page(www))
        text = f"images: {{//web:httpd: 1.0.0}}\nvolumes: {{//web:www: {www}, //web:state: 1.0.0}}\n"
        if version == BAD:
            text += "parameters: {args: [-Z]}\n"  # httpd refuses the option: the app exits at start
        (home / f"{version}.yaml").write_text(text)
    doit(root, *[f"bundle:prod/web/frontend/{v}" for v in VERSIONS], check=True)
    return root


def bundle(root: Path, version: str) -> str:
    return str(root / "bundles/prod/web/frontend" / version)


def onboard(ops: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPS_ONBOARD_NO_START"}
    return subprocess.run([OPS_ONBOARD, "--root", str(ops), "--stop-timeout", STOP, *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def status(ops: Path) -> dict:
    """`status --json` of the one pod."""
    found = json.loads(ok(onboard(ops, "status", "--json")).stdout)
    assert [p["label"] for p in found] == [LABEL]
    return found[0]


def get(port: int, timeout: float = 2) -> bytes | None:
    """The page served on `port`, or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/", timeout=timeout) as answer:
            return answer.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None  # nothing answers, or the pod went away mid-answer (IncompleteRead)


# -- fixtures (import them by name) ------------------------------------------------


@pytest.fixture(scope="session")
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def released(tmp_path_factory, port) -> Path:
    why = missing_tools()
    if why:
        pytest.skip(why)
    return released_httpd(tmp_path_factory.mktemp("release") / "root", port)


@pytest.fixture
def ops(tmp_path, podman_env):  # noqa: F811 (the fixture, imported by name)
    yield tmp_path / "ops"
    runner.stop(Label.parse(LABEL), timeout=0, podman=Podman())
