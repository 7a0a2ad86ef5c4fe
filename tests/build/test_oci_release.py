"""Released images carry an OCI image layout next to their ACI, and pods pin it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import doit

FRONTEND = "images/web/frontend/1.1.0"
STAGING_POD = "channels/staging/web/frontend/1.2.0"


def layout_digest(image_dir: Path, version: str) -> str:
    index = json.loads((image_dir / "oci" / "index.json").read_text())
    (manifest,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == version]
    return manifest["digest"]


def test_every_released_image_has_an_oci_layout_tagged_with_its_version(released_example):
    for sha in sorted((released_example / "images").rglob("sha512")):
        image_dir = sha.parent
        assert (image_dir / "oci" / "oci-layout").is_file()
        assert layout_digest(image_dir, image_dir.name).startswith("sha256:")


def test_build_json_records_the_oci_manifest_digest(released_example):
    image_dir = released_example / FRONTEND
    record = json.loads((image_dir / "build.json").read_text())
    assert record["oci"] == layout_digest(image_dir, "1.1.0")


def test_pod_json_pins_each_image_oci_manifest(released_example):
    pod = json.loads((released_example / STAGING_POD / "pod.json").read_text())
    frontend = next(i for i in pod["images"] if i["name"] == "frontend")
    assert frontend["oci"] == layout_digest(released_example / FRONTEND, "1.1.0")


def test_skopeo_reads_the_layout_and_its_image_id_label(released_example):
    image_dir = released_example / FRONTEND
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci:{image_dir / 'oci'}:1.1.0"], capture_output=True, text=True, check=True)
    config = json.loads(out.stdout)
    image_id = "sha512-" + (image_dir / "sha512").read_text().strip()
    assert config["config"]["Labels"]["io.podrelease.image.id"] == image_id


def test_the_oci_layer_holds_the_aci_rootfs_without_its_prefix(released_example, tmp_path):
    image_dir = released_example / FRONTEND
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{image_dir / 'oci'}:1.1.0", str(bundle)], capture_output=True, check=True)
    aci = tmp_path / "aci"
    aci.mkdir()
    subprocess.run(["tar", "-xzf", str(image_dir / "image.aci"), "-C", str(aci)], check=True)
    in_oci = sorted(str(p.relative_to(bundle / "rootfs")) for p in (bundle / "rootfs").rglob("*"))
    in_aci = sorted(str(p.relative_to(aci / "rootfs")) for p in (aci / "rootfs").rglob("*"))
    assert in_oci == in_aci


def test_a_changed_oci_blob_is_an_error_of_verify(example):
    doit(example, check=True)
    blobs = example / FRONTEND / "oci" / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[700] ^= 0xFF
    layer.chmod(0o644)
    layer.write_bytes(bytes(data))
    result = doit(example, "verify")
    assert result.returncode == 1
    assert f"{FRONTEND}/oci" in result.stdout


def test_a_missing_oci_layout_that_build_json_records_is_an_error_of_verify(example):
    doit(example, check=True)
    shutil.rmtree(example / FRONTEND / "oci")
    result = doit(example, "verify")
    assert result.returncode == 1
    assert f"{FRONTEND}: no oci/, but build.json records OCI image sha256:" in result.stdout


@pytest.mark.parametrize("health, recorded", [
    ("{http: {port: 8080, path: /healthz}, timeout: 15}", {"http": {"port": 8080, "path": "/healthz"}, "timeout": 15}),
    ("{tcp: {port: 5432}}", {"tcp": {"port": 5432}, "timeout": 30}),
    ("{exec: [/bin/check, -q], timeout: 5}", {"exec": {"app": "frontend", "command": ["/bin/check", "-q"]}, "timeout": 5}),
])
def test_a_pod_rule_health_check_is_recorded_in_pod_json(example, health, recorded):
    build = example / "shipyard/web/build.yaml"
    text = build.read_text()
    old = "    health: {http: {port: 8080, path: /}, timeout: 20}\n"
    assert old in text
    build.write_text(text.replace(old, f"    health: {health}\n"))
    doit(example, "release:staging/web/frontend/1.2.0", check=True)
    pod = json.loads((example / STAGING_POD / "pod.json").read_text())
    assert pod["health"] == recorded


def test_a_health_check_with_two_kinds_is_one_line_error(example):
    build = example / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("    health: {http: {port: 8080, path: /}, timeout: 20}\n", "    health: {tcp: {port: 1}, http: {port: 2}}\n"))
    result = doit(example)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("health needs exactly one of http, tcp or exec")
    assert not (example / "images").exists()
