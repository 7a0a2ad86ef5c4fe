"""Hostile bundles and pod.json files through the real `ops-onboard deploy`.

Each test makes one input an attacker could hand a host (a bundle directory,
a bundle tarball, a pod.json) and checks the whole contract: the deploy is
refused with one short line on stderr and no traceback, within a bounded
address space and time (tests/hostile.py), and DIR (which already holds an
installed pod) is exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle

from hostile import closed_directory, onboard, one_line_error
from podfactory import ReleaseRoot, standard_pod, tree

ACTOOL = shutil.which("actool")


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    """A DIR with //web:frontend 1.2.0 installed; every test here must leave it as it is."""
    release = ReleaseRoot(tmp_path_factory.mktemp("host") / "release")
    root = release.root.parent / "ops"
    bundle = release.root / "bundle"
    write_bundle(standard_pod(release), bundle)
    result = onboard(root, "deploy", str(bundle))
    assert result.returncode == 0, result.stderr
    return root


def pod_doc(**changes) -> dict:
    """A pod.json with no images, volumes or files, with `changes` applied."""
    doc = {"name": "//web:hostile", "version": "1", "channel": "prod", "revision": None, "images": [],
           "volumes": [], "files": [],
           "manifest": {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [], "volumes": []}}
    doc.update(changes)
    return doc


def pinned(*paths: str, data: bytes = b"") -> list[dict]:
    """pod.json's `files`: each path pinned as a file holding `data`."""
    return [{"path": path, "sha512": hashlib.sha512(data).hexdigest(), "size": len(data)} for path in paths]


def bundle_of(tmp_path: Path, doc: dict | bytes, files: dict[str, bytes] | None = None) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    (bundle / "pod.json").write_bytes(raw)
    for rel, data in (files or {}).items():
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(data)
    return bundle


def refused(host: Path, source: Path | str, **bounds) -> str:
    """Deploy `source` to `host`: refused in one line, DIR unchanged; returns the line."""
    before = tree(host)
    line = one_line_error(onboard(host, "deploy", str(source), **bounds))
    assert tree(host) == before
    return line


# -- unbounded cost from small input ------------------------------------------------


def test_a_pod_json_of_40_kib_with_one_very_long_path_is_refused_in_bounded_memory(host, tmp_path):
    # Every parent of a path of n segments spelt out as a string: n^2/2 bytes, 2 GB here.
    line = refused(host, bundle_of(tmp_path, pod_doc(files=pinned("a/" * 20_000 + "x"))))
    assert "files[0].path: 'a/a/a/a/a" in line
    assert "is longer than 1024 characters" in line


def test_many_nested_paths_within_the_length_limit_are_checked_in_linear_time(host, tmp_path):
    # 16 MiB of paths, each deep: the check that no file is another's directory must not
    # build every parent of every path.
    paths = [f"{i}/" + "d/" * 500 + "f" for i in range(12_000)] + ["0/d/d"]
    line = refused(host, bundle_of(tmp_path, pod_doc(files=pinned(*paths))))
    assert "path '0/d/d' is both a file and the directory of '0/d/d/d/" in line


def test_a_path_segment_longer_than_a_file_name_can_be_is_refused(host, tmp_path):
    line = refused(host, bundle_of(tmp_path, pod_doc(files=pinned("x" * 256))))
    assert "has a segment longer than 255 bytes" in line


def test_a_path_that_is_not_utf8_is_refused(host, tmp_path):
    raw = json.dumps(pod_doc(files=pinned("ok", "bad\udcff"))).encode()
    line = refused(host, bundle_of(tmp_path, raw))
    assert "files[1].path: 'bad\\udcff' is not valid UTF-8" in line


# -- bundle tarballs: only what pod.json names, bounded -------------------------------

SMALL_FILES = 64 << 20  # RLIMIT_FSIZE for the tests below: no file they write may be bigger


class Zeros(io.RawIOBase):
    """`size` zero bytes, read without holding them."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def bundle_tarball(tmp_path: Path, bundle: Path, extra: list[tarfile.TarInfo] = (), first: bool = False,
                   sizes: dict[str, int] | None = None) -> Path:
    """A tar.gz of the bundle directory's files, with the `extra` members (before or after them)."""
    archive = tmp_path / "bundle.tar.gz"
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        def add_extra():
            for member in extra:
                tar.addfile(member, Zeros(member.size) if member.isfile() else None)
        if first:
            add_extra()
        for path in files:
            tar.add(path, arcname=path.relative_to(bundle).as_posix())
        if not first:
            add_extra()
    return archive


def member(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory) -> Path:
    release = ReleaseRoot(tmp_path_factory.mktemp("good") / "release")
    where = release.root / "bundle"
    # an image of its own: the host's is installed, and an installed image is not fetched
    write_bundle(standard_pod(release, version="2.0.0", image_version="2.0.0"), where)
    return where


def test_a_gigabyte_of_zeros_in_a_bundle_tarball_that_pod_json_never_names_is_not_extracted(host, good_bundle, tmp_path):
    archive = bundle_tarball(tmp_path, good_bundle, [member("junk", 1 << 30)], first=True)
    line = refused(host, archive, file_size=SMALL_FILES)
    assert "bundle.tar.gz: its data extends past " in line and "(200 times its size)" in line


def test_a_bundle_tarball_of_more_members_than_the_limit_is_refused(host, good_bundle, tmp_path):
    archive = bundle_tarball(tmp_path, good_bundle, [member(f"junk/{i}") for i in range(100_001)])
    line = refused(host, archive)
    assert "bundle.tar.gz: more than 100000 members" in line


def test_members_pod_json_does_not_name_are_skipped_and_the_rest_deploys(good_bundle, tmp_path):
    archive = bundle_tarball(tmp_path, good_bundle, [member("notes/readme.txt", 5), member("x", 0, tarfile.SYMTYPE)])
    ops = tmp_path / "ops"
    result = onboard(ops, "deploy", str(archive), file_size=SMALL_FILES)
    assert result.returncode == 0, result.stderr
    assert not any(p.name in ("notes", "readme.txt", "x") for p in ops.rglob("*"))


@pytest.mark.parametrize("extra, says", [
    ([member("frontend.service", 0, tarfile.DIRTYPE)], "member 'frontend.service' is not a regular file"),
    ([member("pod.json", 10)], "member 'pod.json' appears twice"),
    ([member("frontend.service", 5)], "member 'frontend.service' appears twice"),
])
def test_a_member_pod_json_names_must_be_one_regular_file(host, good_bundle, tmp_path, extra, says):
    archive = bundle_tarball(tmp_path, good_bundle, extra)
    assert says in refused(host, archive, file_size=SMALL_FILES)


def test_oci_blobs_of_a_bundle_tarball_may_not_hold_more_than_what_pod_json_pins_allows(host, good_bundle, tmp_path):
    # An image pinning an OCI manifest lets any `<image>/oci/blobs/sha256/<hex>` through (their
    # sizes are in the manifest, not in pod.json): their total is bounded instead.
    bundle = tmp_path / "copy"
    shutil.copytree(good_bundle, bundle)
    doc = json.loads((bundle / "pod.json").read_text())
    doc["images"][0]["oci"] = "sha256:" + "a" * 64
    (bundle / "pod.json").write_text(json.dumps(doc))
    blobs = [member(f"frontend/oci/blobs/sha256/{i:064x}", 10 << 20) for i in range(10)]
    line = refused(host, bundle_tarball(tmp_path, bundle, blobs, first=True), file_size=SMALL_FILES)
    assert "the files pod.json names hold more than" in line


def test_a_volume_tarball_expanding_past_its_limit_is_refused(host, tmp_path):
    release = ReleaseRoot(tmp_path / "release")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        tar.addfile(member("zeros.bin", 300 << 20), Zeros(300 << 20))
    pod_dir = standard_pod(release, version="3.0.0", volume_version="3.0.0",
                           volume_files={"bomb.tar.gz": buf.getvalue()})
    line = refused(host, pod_dir, file_size=SMALL_FILES)
    assert "static/bomb.tar.gz: its files expand to more than " in line and "(200 times its size)" in line


# -- private files made public ---------------------------------------------------------


@pytest.fixture
def closed_dir(tmp_path) -> Path:
    """A directory only its owner may enter, outside any bundle, holding a readable secret."""
    return closed_directory(tmp_path / "home", "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")


def test_a_bundle_entry_linked_to_a_readable_file_in_a_closed_directory_is_not_published(host, tmp_path, closed_dir):
    bundle = bundle_of(tmp_path, pod_doc(files=pinned("notes")))
    (bundle / "notes").symlink_to(closed_dir / "secret")
    line = refused(host, bundle)
    assert "notes: not readable by everyone: the directory" in line and "is closed to others" in line


def test_a_bundle_directory_inside_a_closed_home_deploys(tmp_path, closed_dir, good_bundle):
    # The place the operator keeps the bundle may be closed to others (a home directory):
    # only the directories the files are reached through beyond it must be open.
    inside = closed_dir / "bundle"
    shutil.copytree(good_bundle, inside)
    result = onboard(tmp_path / "ops", "deploy", str(inside))
    assert result.returncode == 0, result.stderr


def test_a_sha512_file_linked_to_a_secret_never_shows_its_bytes(host, tmp_path, closed_dir, good_bundle):
    bundle = tmp_path / "copy"
    shutil.copytree(good_bundle, bundle)
    (bundle / "frontend/sha512").unlink()
    (bundle / "frontend/sha512").symlink_to(closed_dir / "secret")
    line = refused(host, bundle)
    assert "frontend/sha512: not readable by everyone" in line
    assert "root:" not in line and "salt" not in line


def test_a_readable_sha512_file_that_is_not_a_digest_is_never_repeated(host, tmp_path, good_bundle):
    bundle = tmp_path / "copy"
    shutil.copytree(good_bundle, bundle)
    (bundle / "frontend/sha512").unlink()
    (bundle / "frontend/sha512").write_text("db_password=hunter2\n")
    line = refused(host, bundle)
    assert "frontend/sha512: holds no sha512 digest" in line and "hunter2" not in line


def test_a_directory_of_the_bundle_swapped_for_a_link_to_a_closed_one_is_refused(host, tmp_path, closed_dir):
    (closed_dir / "static").mkdir()
    (closed_dir / "static/page.html").write_text("private\n")
    os.chmod(closed_dir / "static/page.html", 0o644)
    bundle = bundle_of(tmp_path, pod_doc(files=pinned("static/page.html")))
    (bundle / "static").symlink_to(closed_dir / "static")
    assert "is closed to others" in refused(host, bundle)


# -- output ---------------------------------------------------------------------------


def test_control_characters_in_a_hostile_path_are_escaped_in_the_error(host, tmp_path):
    # A path that clears the screen and prints a fake success line after the real error.
    fake = "x\x1b[2J\x1b[H\rdeployed web:hostile 1 to DIR\n\u202eevil"
    doc = pod_doc(files=pinned(fake))
    line = refused(host, bundle_of(tmp_path, doc))
    assert "\\x1b[2J" in line and "\\x0a" in line and "\\u202e" in line


def test_control_characters_in_a_missing_file_name_are_escaped(host, tmp_path):
    # Not in quotes: the path of a missing file as the fetch reports it.
    line = refused(host, bundle_of(tmp_path, pod_doc(files=pinned("run\x1b]0;owned\x07.sh"))))
    assert "run\\x1b]0;owned\\x07.sh: missing" in line


# -- the installed pod manifest -------------------------------------------------------


def manifest_with(**changes) -> dict:
    manifest = {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [], "volumes": []}
    manifest.update(changes)
    return manifest


@pytest.mark.parametrize("manifest, says", [
    (manifest_with(volumes=[{"name": "v", "kind": "host"}, {"name": "v", "kind": "host"}]),
     "manifest.volumes[1]: volume 'v' is declared twice"),
    (manifest_with(volumes=[{"name": "v", "kind": "host"}, {"name": "v", "kind": "empty"}]),
     "manifest.volumes[1]: volume 'v' is declared twice"),
    (manifest_with(volumes=[{"name": "v", "kind": "host", "readOnly": "yes"}]),
     "manifest.volumes[0].readOnly must be true or false"),
    (manifest_with(volumes=[{"name": "v", "kind": "host"}, {"name": "Bad_Name", "kind": "empty"}]),
     "manifest.volumes[1].name 'Bad_Name' is not a valid name"),
    (manifest_with(volumes=[{"name": "v", "kind": "host"}, {"name": "w", "kind": "nfs"}]),
     "manifest.volumes[1].kind 'nfs' is not 'host' or 'empty'"),
])
def test_a_pod_manifest_actool_would_refuse_is_refused(host, tmp_path, manifest, says):
    doc = pod_doc(volumes=[{"label": "//web:static", "name": "v", "version": "1", "files": []}], manifest=manifest)
    assert says in refused(host, bundle_of(tmp_path, doc))


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed")
@pytest.mark.parametrize("volumes", [
    [{"name": "v", "kind": "host"}, {"name": "v", "kind": "host"}],
    [{"name": "v", "kind": "host", "readOnly": "yes"}],
    [{"name": "v", "kind": "host"}, {"name": "w", "kind": "nfs"}],
])
def test_the_manifests_refused_are_those_actool_refuses(tmp_path, volumes):
    # The refusals above stand for actool's: each of those manifests, installed, would fail it.
    for vol in volumes:
        vol.setdefault("source", "/srv/v")
    path = tmp_path / "pod-manifest.json"
    path.write_text(json.dumps(manifest_with(volumes=volumes)))
    assert subprocess.run([ACTOOL, "validate", str(path)], capture_output=True).returncode != 0


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed")
def test_the_installed_manifest_of_a_pod_with_empty_and_host_volumes_passes_actool(tmp_path):
    ops = tmp_path / "ops"
    manifest = manifest_with(volumes=[{"name": "v", "kind": "host", "readOnly": True},
                                      {"name": "scratch", "kind": "empty"}])
    doc = pod_doc(volumes=[{"label": "//web:static", "name": "v", "version": "1", "files": []}], manifest=manifest)
    result = onboard(ops, "deploy", str(bundle_of(tmp_path, doc)))
    assert result.returncode == 0, result.stderr
    installed = ops / "pods/web/hostile/1/pod-manifest.json"
    check = subprocess.run([ACTOOL, "validate", str(installed)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


# -- over-long names ------------------------------------------------------------------


def test_a_version_of_255_characters_and_a_label_of_the_longest_names_deploy_and_verify(tmp_path):
    # A label path of 1024 characters, a pod name and version of 255: every file name
    # ops-onboard makes from them (temporaries included) stays within 255 bytes.
    ops = tmp_path / "ops"
    label = "//" + "/".join(["p" * 200] * 6)[:1024] + ":" + "n" * 255
    doc = pod_doc(name=label, version="1." + "0" * 253, files=pinned("f", data=b"x"))
    bundle = bundle_of(tmp_path, doc, {"f": b"x"})
    for command in (("deploy", str(bundle)), ("deploy", str(bundle)), ("verify",), ("list",)):
        result = onboard(ops, *command)
        assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]


def test_a_revision_of_a_megabyte_is_refused_in_one_line(host, tmp_path):
    line = refused(host, bundle_of(tmp_path, pod_doc(revision="9f" * 500_000)))
    assert "revision '9f9f9f" in line and "is longer than 255 characters" in line


def test_a_version_longer_than_255_characters_is_refused_in_one_line(host, tmp_path):
    line = refused(host, bundle_of(tmp_path, pod_doc(version="1." + "0" * 254)))
    assert "version '1.000" in line and "is not a valid version" in line
