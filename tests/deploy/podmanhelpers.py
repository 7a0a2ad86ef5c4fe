"""Real podman for the runtime tests: fixtures and helpers (import the fixtures by name).

Podman runs as root here, with a `containers.conf` (cgroupfs, file events,
runc, no default ulimits) and `--root`/`--runroot` private to the test
session, passed the way a host would: through `PODRELEASE_PODMAN`. Tests
that need podman are skipped where it (or root, umoci, busybox) is missing.

Not a `conftest.py`: the repository's tests import `tests/conftest.py` as
`conftest`, and a second conftest module would take that name from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from podrelease.core.podjson import PodJson, parse_document

from httpservers import free_port  # noqa: F401 (re-exported for the deploy tests)

CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""
BUSYBOX = "/bin/busybox"
IMAGE_VERSION = "1.36.1"
IMAGE_ID = "sha512-" + hashlib.sha512(b"podrelease test busybox").hexdigest()
# These pods are laid out as installed (their OCI layout in place): no image.aci is ever fetched.
ACI_PIN = {"sha512": hashlib.sha512(b"podrelease test busybox image.aci").hexdigest(), "size": 0}


def missing_tools() -> str | None:
    if os.geteuid() != 0:
        return "podman tests run as root"
    for tool in ("podman", "umoci"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} (busybox-static) is not installed"
    return None


def build_busybox_layout(where: Path, tag: str = IMAGE_VERSION) -> Path:
    """An OCI image layout at `where` whose one image (tagged `tag`) is busybox with sh and httpd."""
    bundle = where.parent / (where.name + ".bundle")
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("umoci", "init", "--layout", str(where))
    run("umoci", "new", "--image", f"{where}:{tag}")
    run("umoci", "unpack", "--image", f"{where}:{tag}", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(exist_ok=True)
    (rootfs / "www").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "httpd", "sleep", "test", "cat", "echo"):
        os.symlink("busybox", rootfs / "bin" / applet)
    run("umoci", "repack", "--image", f"{where}:{tag}", str(bundle))
    shutil.rmtree(bundle)
    return where




@dataclass
class Installed:
    pod: PodJson
    version_dir: Path


def pod_document(apps: list[dict], label: str = "//web:frontend", version: str = "1.2.0",
                 volumes: dict[str, bool] | None = None, channel: str = "prod") -> dict:
    """A pod.json document: `apps` are {name, exec[, mounts, environment, user, group, workingDirectory]}."""
    volumes = volumes if volumes is not None else {"static": True}
    manifest_apps = []
    for app in apps:
        body = {"exec": app["exec"], "user": app.get("user", "0"), "group": app.get("group", "0")}
        for key in ("environment", "workingDirectory"):
            if key in app:
                body[key] = app[key]
        manifest_apps.append({"name": app["name"], "image": {"id": IMAGE_ID}, "app": body,
                              "mounts": app.get("mounts", [])})
    return {
        "name": label,
        "version": version,
        "channel": channel,
        "revision": None,
        "images": [{"label": "//base:busybox", "name": "busybox", "version": IMAGE_VERSION, "id": IMAGE_ID,
                    "path": "busybox/image.aci", "aci": ACI_PIN}],
        "volumes": [{"label": f"//web:{name}", "name": name, "version": "1.0.0", "files": []} for name in volumes],
        "files": [],
        "manifest": {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": manifest_apps,
                     "volumes": [{"name": n, "kind": "host", "readOnly": ro} for n, ro in volumes.items()]},
    }


def install(root: Path, layout: Path, doc: dict, volume_files: dict[str, dict[str, bytes]] | None = None) -> Installed:
    """Lay `doc` out as ops-onboard installs a version: pod.json, images/<image>/oci, volumes/<v>/."""
    pod = parse_document(doc, json.dumps(doc).encode())
    version_dir = root / "pods" / pod.label.join() / pod.version
    (version_dir / "images" / "busybox").mkdir(parents=True)
    os.symlink(layout, version_dir / "images" / "busybox" / "oci")
    for vol in doc["manifest"]["volumes"]:
        (version_dir / "volumes" / vol["name"]).mkdir(parents=True)
    for vol, files in (volume_files or {}).items():
        for rel, data in files.items():
            (version_dir / "volumes" / vol / rel).write_bytes(data)
    (version_dir / "pod.json").write_text(json.dumps(doc, indent=2))
    return Installed(pod, version_dir)

@pytest.fixture(scope="session")
def podman_env(tmp_path_factory):
    """Session-wide podman: env set for the whole session, storage removed at the end."""
    why = missing_tools()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("podman")
    conf = base / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    command = f"podman --root {base}/root --runroot {base}/runroot"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_CONF", str(conf))
        mp.setenv("PODRELEASE_PODMAN", command)
        yield command.split()
        subprocess.run([*command.split(), "pod", "rm", "--all", "--force", "--time", "0"],
                       capture_output=True, timeout=120)
        subprocess.run([*command.split(), "rmi", "--all", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory) -> Path:
    why = missing_tools()
    if why:
        pytest.skip(why)
    return build_busybox_layout(tmp_path_factory.mktemp("images") / "oci")
