"""`from: <image label>@<version>`: an image that starts from another's rootfs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
from pathlib import Path

from conftest import doit, executed

BUILD = """\
images:
  os:
    rootfs: [{src: os/, dst: /}]
    app: {exec: [/bin/init], user: "100", environment: {LANG: C, TZ: UTC}}
  web:
    from: os@1.0.0
    rootfs: [{src: web/, dst: /srv/}]
    app: {exec: [/srv/serve], environment: {TZ: Europe/Paris}}
  tool:
    from: //base:web@2.0.0
    command: [sh, -c, "echo built > $ROOTFS/srv/BUILT"]
pods:
  web: {images: [web]}
  tool: {images: [tool]}
"""


def make_root(root: Path) -> Path:
    base = root / "shipyard" / "base"
    (base / "os" / "bin").mkdir(parents=True)
    (base / "os" / "bin" / "init").write_text("#!/bin/sh\n")
    os.chmod(base / "os" / "bin" / "init", 0o4755)
    (base / "os" / "etc").mkdir()
    (base / "os" / "etc" / "os-release").write_text("ID=podrelease-test\n")
    os.symlink("/bin/init", base / "os" / "bin" / "sh")
    (base / "web").mkdir()
    (base / "web" / "serve").write_text("#!/bin/sh\n")
    (base / "build.yaml").write_text(BUILD)
    for pod, version in [("web", "2.0.0"), ("tool", "3.0.0")]:
        home = root / "channels" / "prod" / "base" / pod
        home.mkdir(parents=True)
        (home / f"{version}.yaml").write_text("")
    (root / "dodo.py").write_text("from podrelease.tasks import *  # noqa: F401,F403\n")
    return root


def members(aci: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(aci) as tar:
        return {m.name: m for m in tar.getmembers()}


def manifest(aci: Path) -> dict:
    with tarfile.open(aci) as tar:
        return json.load(tar.extractfile("manifest"))


def test_base_files_appear_in_the_derived_image_with_their_modes(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, "release:prod/base/web/2.0.0", check=True)
    found = members(root / "images/base/web/2.0.0/image.aci")
    assert {"rootfs/bin/init", "rootfs/etc/os-release", "rootfs/srv/serve", "rootfs/bin/sh"} <= set(found)
    assert found["rootfs/bin/init"].mode == 0o4755
    assert found["rootfs/bin/sh"].issym() and found["rootfs/bin/sh"].linkname == "/bin/init"


def test_the_base_is_built_first_as_a_dependency(tmp_path):
    root = make_root(tmp_path / "root")
    ran = executed(doit(root, "image:base/web/2.0.0", check=True))
    assert ran.index("image:base/os/1.0.0") < ran.index("image:base/web/2.0.0")


def test_app_settings_are_inherited_unless_overridden(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, "release:prod/base/web/2.0.0", check=True)
    app = manifest(root / "images/base/web/2.0.0/image.aci")["app"]
    assert app["exec"] == ["/srv/serve"]
    assert app["user"] == "100"
    assert {e["name"]: e["value"] for e in app["environment"]} == {"LANG": "C", "TZ": "Europe/Paris"}


def test_bases_chain_and_a_command_runs_over_the_base(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, "release:prod/base/tool/3.0.0", check=True)
    found = members(root / "images/base/tool/3.0.0/image.aci")
    assert {"rootfs/bin/init", "rootfs/srv/serve", "rootfs/srv/BUILT"} <= set(found)
    assert manifest(root / "images/base/tool/3.0.0/image.aci")["app"]["exec"] == ["/srv/serve"]


def test_derived_image_is_one_flat_valid_aci(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, "release:prod/base/tool/3.0.0", check=True)
    aci = root / "images/base/tool/3.0.0/image.aci"
    result = subprocess.run(["actool", "validate", str(aci)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dependencies" not in manifest(aci)


def test_derived_image_sha512_is_reproducible(tmp_path):
    first, second = make_root(tmp_path / "first"), make_root(tmp_path / "second")
    doit(first, "release:prod/base/tool/3.0.0", check=True)
    doit(second, "release:prod/base/tool/3.0.0", check=True)
    for image in ("web/2.0.0", "tool/3.0.0"):
        assert (first / "images/base" / image / "sha512").read_text() == (second / "images/base" / image / "sha512").read_text()


def test_a_base_cycle_is_one_line_error(tmp_path):
    root = make_root(tmp_path / "root")
    build = root / "shipyard/base/build.yaml"
    build.write_text(build.read_text().replace("  os:\n", "  os:\n    from: tool@3.0.0\n"))
    result = doit(root)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "starts from itself" in result.stderr.strip().splitlines()[0]
    assert not (root / "images").exists()


def test_a_tampered_base_is_refused(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, "image:base/os/1.0.0", check=True)
    aci = root / "images/base/os/1.0.0/image.aci"
    with gzip.open(aci) as f:
        tar = bytearray(f.read())
    tar[tar.index(b"ID=podrelease-test")] ^= 0x20
    os.chmod(aci, 0o644)
    aci.write_bytes(gzip.compress(bytes(tar)))
    result = doit(root, "image:base/web/2.0.0")
    assert result.returncode != 0 and "does not match its sha512" in result.stderr
    assert not (root / "images/base/web/2.0.0").exists()


def test_verify_is_clean_after_releasing_derived_images(tmp_path):
    root = make_root(tmp_path / "root")
    doit(root, check=True)
    result = doit(root, "verify", "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
