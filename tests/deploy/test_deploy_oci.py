"""OCI layouts travel with a pod: bundled, fetched blob by blob, checked by sha256, installed whole."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

from podrelease.core.oci import manifest_digest

from conftest import snapshot
from podfactory import standard_pod
from podmanhelpers import podman_env  # noqa: F401 (fixtures)
from releasehelpers import LABEL, bundle, ok, onboard, port, released  # noqa: F401 (fixtures)


def pinned(bundle_dir: str | Path) -> tuple[str, str, str]:
    """The image id, its version and the manifest digest pod.json pins."""
    image = json.loads((Path(bundle_dir) / "pod.json").read_text())["images"][0]
    return image["id"], image["version"], image["oci"]


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ops-onboard: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_deploy_installs_a_complete_checked_layout_from_a_directory_and_a_tarball(released, tmp_path):  # noqa: F811
    image_id, version, digest = pinned(bundle(released, "1.0.0"))
    archive = tmp_path / "bundle.tar.gz"
    subprocess.run(["tar", "-C", bundle(released, "1.0.0"), "-czf", str(archive), "."], check=True)
    for ops, source in ((tmp_path / "from-dir", bundle(released, "1.0.0")), (tmp_path / "from-tar", str(archive))):
        ok(onboard(ops, "deploy", "--no-start", source))
        layout = ops / "images" / image_id / "oci"
        assert manifest_digest(layout, version, check_layers=True) == digest
        index = json.loads((layout / "index.json").read_text())
        assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [version]
    if shutil.which("skopeo"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:{version}"], capture_output=True, check=True)
        assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == digest


def test_a_tampered_layer_is_refused_and_dir_is_unchanged(released, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(bundle(released, "2.0.0"), copy)  # a copy: the bundle's files are hard links into the release
    _, _, digest = pinned(copy)
    blobs = copy / "httpd/oci/blobs/sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    layer = blobs / manifest["layers"][0]["digest"].removeprefix("sha256:")
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 1
    layer.write_bytes(bytes(data))
    ops = tmp_path / "ops"
    line = one_line(onboard(ops, "deploy", "--no-start", str(copy)))
    assert "sha256 is" in line and layer.name in line
    assert set(snapshot(ops)) == set()  # nothing: a deploy refused before its commit never takes the lock


def test_a_missing_manifest_blob_is_refused(released, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(bundle(released, "1.0.0"), copy)
    _, _, digest = pinned(copy)
    (copy / "httpd/oci/blobs/sha256" / digest.removeprefix("sha256:")).unlink()
    line = one_line(onboard(tmp_path / "ops", "deploy", "--no-start", str(copy)))
    assert line.endswith(f"httpd/oci/blobs/sha256/{digest.removeprefix('sha256:')}: missing")


def test_an_image_released_before_oci_layouts_installs_but_does_not_start(release, tmp_path, podman_env):  # noqa: F811
    ops = tmp_path / "ops"
    line = one_line(onboard(ops, "deploy", str(standard_pod(release))))
    assert "was released without an OCI layout" in line and "cannot be started" in line
    assert (ops / "pods/web/frontend/1.2.0/installed.json").is_file()
    assert not (ops / "pods/web/frontend/current").exists()
    ok(onboard(ops, "deploy", "--no-start", str(standard_pod(release, version="1.3.0"))))
    assert "without an OCI layout" in one_line(onboard(ops, "start", LABEL))


def test_deploy_from_a_url_fetches_the_layout_over_http(released, tmp_path):  # noqa: F811
    root = Path(bundle(released, "1.0.0"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ops = tmp_path / "ops"
        ok(onboard(ops, "deploy", "--no-start", f"http://127.0.0.1:{server.server_address[1]}/pod.json"))
    finally:
        server.shutdown()
        server.server_close()
    image_id, version, digest = pinned(root)
    assert manifest_digest(ops / "images" / image_id / "oci", version, check_layers=True) == digest


def test_verify_reports_a_damaged_layout(released, tmp_path):  # noqa: F811
    ops = tmp_path / "ops"
    ok(onboard(ops, "deploy", "--no-start", bundle(released, "1.0.0")))
    ok(onboard(ops, "verify"))
    image_id, _, digest = pinned(bundle(released, "1.0.0"))
    blobs = ops / "images" / image_id / "oci/blobs/sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    layer = blobs / manifest["layers"][0]["digest"].removeprefix("sha256:")
    layer.chmod(0o644)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 1
    layer.write_bytes(bytes(data))
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert f"images/{image_id}: oci: " in result.stdout and "does not match its digest" in result.stdout
