"""ops-onboard from bundles (directories and tars), through the installed console script."""

from __future__ import annotations

import fcntl
import gzip
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
from podrelease.core.errors import IntegrityError
from podrelease.core.hashing import AciIdCheck

from hostile import OPS_ONBOARD, one_line_error
from podfactory import Mount, ReleaseRoot, hostile_tarball, pin, standard_pod, tarball, tree, write_aci

ACTOOL = shutil.which("actool")
# The console script pip installed next to this interpreter (not a version manager's shim).


def onboard(root: Path, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([OPS_ONBOARD, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def unchanging(tmp_path_factory) -> Path:
    """A root with //web:frontend 1.2.0 installed, shared by the tests that must not change it.

    Each of them either only reads it or checks it is exactly as it was afterwards.
    """
    release = ReleaseRoot(tmp_path_factory.mktemp("unchanging") / "release")
    root = release.root.parent / "ops"
    ok(onboard(root, "deploy", str(make_bundle(release, "1.2.0"))))
    return root


def make_bundle(release: ReleaseRoot, version: str = "1.2.0", **kwargs) -> Path:
    pod_dir = standard_pod(release, version=version, **kwargs)
    bundle = release.root / "bundles/prod/web/frontend" / version
    write_bundle(pod_dir, bundle)
    return bundle


def current(ops: Path, pod: str = "web/frontend") -> str:
    return os.readlink(ops / "pods" / pod / "current")


def without_root(picture: dict) -> dict:
    """A tree picture but for the files that name DIR itself (`manifests` compares those)."""
    return {rel: entry for rel, entry in picture.items()
            if not rel.endswith(("pod-manifest.json", "installed.json"))}


def manifests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text().replace(str(root), "<DIR>")
            for p in root.glob("pods/**/pod-manifest.json")}


# -- deploy ---------------------------------------------------------------


def test_deploy_installs_the_pod_under_its_label_path_and_version(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    installed = ops / "pods/web/frontend/1.2.0"
    assert (installed / "pod.json").read_bytes() == (release.root / "bundles/prod/web/frontend/1.2.0/pod.json").read_bytes()
    assert (installed / "volumes/static/index.html").read_bytes() == b"<h1>hello</h1>\n"
    assert (installed / "volumes/static/css/site.css").read_bytes() == b"body{}\n"
    assert (installed / "files/frontend.service").is_file()
    assert (installed / "images/frontend/image.aci").read_bytes() == (
        release.root / "images/web/frontend/1.1.0/image.aci").read_bytes()


def test_deploy_makes_the_deployed_version_current(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    assert current(ops) == "1.2.0"


def test_deploy_stores_each_image_once_by_id(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    image_id = "sha512-" + (release.root / "images/web/frontend/1.1.0/sha512").read_text().strip()
    assert os.listdir(ops / "images") == [image_id]


@pytest.mark.skipif(ACTOOL is None, reason="actool (Debian appc-spec) is not installed")
def test_installed_pod_manifest_passes_actool_validate(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    manifest = ops / "pods/web/frontend/1.2.0/pod-manifest.json"
    result = subprocess.run([ACTOOL, "validate", str(manifest)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(ACTOOL is None, reason="actool (Debian appc-spec) is not installed")
def test_installed_image_passes_actool_validate(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    image = ops / "pods/web/frontend/1.2.0/images/frontend/image.aci"
    result = subprocess.run([ACTOOL, "validate", str(image)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pod_manifest_points_host_volumes_at_the_extracted_volume(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    manifest = json.loads((ops / "pods/web/frontend/1.2.0/pod-manifest.json").read_text())
    assert manifest["volumes"] == [{"name": "static", "kind": "host", "readOnly": True,
                                    "source": str(ops / "pods/web/frontend/1.2.0/volumes/static")}]


def test_deploy_from_a_tar_installs_what_the_directory_installs(release, tmp_path):
    bundle = make_bundle(release)
    archive = tmp_path / "bundle.tar"
    subprocess.run(["tar", "-C", str(bundle.parent), "-cf", str(archive), "1.2.0"], check=True)
    ok(onboard(tmp_path / "from-dir", "deploy", str(bundle)))
    ok(onboard(tmp_path / "from-tar", "deploy", str(archive)))
    assert without_root(tree(tmp_path / "from-dir")) == without_root(tree(tmp_path / "from-tar"))
    assert manifests(tmp_path / "from-dir") == manifests(tmp_path / "from-tar")


def test_deploy_from_a_tar_gz_with_the_bundle_at_its_top(release, tmp_path, ops):
    bundle = make_bundle(release)
    archive = tmp_path / "bundle.tar.gz"
    subprocess.run(["tar", "-C", str(bundle), "-czf", str(archive), "."], check=True)
    ok(onboard(ops, "deploy", str(archive)))
    assert current(ops) == "1.2.0"


def test_deploy_from_a_pod_directory_of_a_release_root(release, ops):
    pod_dir = standard_pod(release)
    ok(onboard(ops, "deploy", str(pod_dir)))
    assert (ops / "pods/web/frontend/1.2.0/volumes/static/index.html").is_file()


def test_deploy_of_a_pod_with_an_empty_label_path(release, ops):
    image = release.image("", "tool", "1")
    pod_dir = release.pod("prod", "", "tool", "1", images=[image], files={})
    ok(onboard(ops, "deploy", str(pod_dir)))
    assert os.readlink(ops / "pods/tool/current") == "1"
    assert (ops / "pods/tool/1/images/tool/image.aci").is_file()


def test_deploy_extracts_an_uncompressed_volume_tarball_and_keeps_plain_files(release, ops):
    image = release.image("infra/db", "pg", "15")
    volume = release.volume("infra/db", "seed", "2", {"seed.tar": tarball({"a.sql": b"select 1;\n"}, gz=False),
                                                      "README": b"plain\n"})
    pod_dir = release.pod("prod", "infra/db", "pg", "15", images=[image], volumes=[Mount("seed", volume, "/seed")])
    ok(onboard(ops, "deploy", str(pod_dir)))
    installed = ops / "pods/infra/db/pg/15/volumes/seed"
    assert (installed / "a.sql").read_bytes() == b"select 1;\n"
    assert (installed / "README").read_bytes() == b"plain\n"


def test_redeploying_an_intact_version_changes_nothing(release, ops):
    bundle = make_bundle(release)
    ok(onboard(ops, "deploy", str(bundle)))
    before = tree(ops)
    result = ok(onboard(ops, "deploy", str(bundle)))
    assert "already installed and intact" in result.stdout
    assert tree(ops) == before


def test_redeploying_a_damaged_version_repairs_it(release, ops):
    bundle = make_bundle(release)
    ok(onboard(ops, "deploy", str(bundle)))
    intact = tree(ops)
    (ops / "pods/web/frontend/1.2.0/volumes/static/index.html").write_bytes(b"defaced")
    ok(onboard(ops, "deploy", str(bundle)))
    assert tree(ops) == intact


def test_deploying_another_pod_json_as_an_installed_version_is_refused(release, ops, tmp_path):
    ok(onboard(ops, "deploy", str(make_bundle(release))))
    other = ReleaseRoot(tmp_path / "other")
    pod_dir = standard_pod(other, image_version="2.0.0")
    before = tree(ops)
    line = one_line_error(onboard(ops, "deploy", str(pod_dir)))
    assert "already installed from a different pod.json" in line
    assert tree(ops) == before


def test_a_crashed_deploys_staging_is_swept_by_the_next_command(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    leftover = ops / ".tmp-deploy-999999999-crashed"  # its owner (that pid) is gone
    (leftover / "images").mkdir(parents=True)
    ok(onboard(ops, "list"))
    assert not leftover.exists()


# -- list, activate, rollback ------------------------------------------------


def test_list_shows_one_line_per_installed_version_marking_the_current(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.10.0"))))
    ok(onboard(ops, "activate", "//web:frontend", "1.2.0"))
    lines = ok(onboard(ops, "list")).stdout.splitlines()
    assert lines == [
        "* //web:frontend 1.2.0 (prod, revision 9f1c2e7)",
        "  //web:frontend 1.10.0 (prod, revision 9f1c2e7)",
    ]


def test_list_json_is_for_scripts(unchanging):
    entries = json.loads(ok(onboard(unchanging, "list", "--json")).stdout)
    assert [(e["label"], e["version"], e["current"], e["channel"]) for e in entries] == [
        ("//web:frontend", "1.2.0", True, "prod")]
    assert entries[0]["images"][0]["name"] == "frontend"


def test_list_of_a_root_that_does_not_exist_is_empty(ops):
    result = ok(onboard(ops, "list"))
    assert result.stdout == ""
    assert not ops.exists()


def test_activate_makes_an_installed_version_current(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    ok(onboard(ops, "activate", "//web:frontend", "1.2.0"))
    assert current(ops) == "1.2.0"


def test_activate_of_a_version_not_installed_fails(unchanging):
    line = one_line_error(onboard(unchanging, "activate", "//web:frontend", "9.9"))
    assert "no installed version '9.9'" in line and "1.2.0" in line


def test_activate_of_an_unknown_label_fails(unchanging):
    assert "//web:backend is not installed" in one_line_error(onboard(unchanging, "activate", "//web:backend", "1.2.0"))


def test_a_malformed_label_is_refused(unchanging):
    assert "//<label_path>:<name>" in one_line_error(onboard(unchanging, "activate", "web:frontend", "1.2.0"))


def test_rollback_returns_to_the_version_current_before(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    ok(onboard(ops, "rollback", "//web:frontend"))
    assert current(ops) == "1.2.0"


def test_rollback_twice_walks_back_through_the_history(release, ops):
    for version in ("1.2.0", "1.3.0", "1.4.0"):
        ok(onboard(ops, "deploy", str(make_bundle(release, version))))
    ok(onboard(ops, "rollback", "//web:frontend"))
    ok(onboard(ops, "rollback", "//web:frontend"))
    assert current(ops) == "1.2.0"


def test_rollback_goes_back_across_an_activate(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    ok(onboard(ops, "activate", "//web:frontend", "1.2.0"))
    ok(onboard(ops, "rollback", "//web:frontend"))
    assert current(ops) == "1.3.0"


def test_rollback_without_an_earlier_version_fails(unchanging):
    assert "no earlier version" in one_line_error(onboard(unchanging, "rollback", "//web:frontend"))
    assert current(unchanging) == "1.2.0"


# -- undeploy ---------------------------------------------------------------


def test_undeploy_refuses_the_current_version(unchanging):
    before = tree(unchanging)
    assert "--force" in one_line_error(onboard(unchanging, "undeploy", "//web:frontend", "1.2.0"))
    assert tree(unchanging) == before


def test_undeploy_force_removes_the_current_version(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    ok(onboard(ops, "undeploy", "--force", "//web:frontend", "1.3.0"))
    assert not (ops / "pods/web/frontend/1.3.0").exists()
    assert not os.path.lexists(ops / "pods/web/frontend/current")


def test_undeploy_removes_a_version_and_the_images_no_other_pod_uses(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0", image_version="1.1.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0", image_version="1.3.0"))))
    old_image = "sha512-" + (release.root / "images/web/frontend/1.1.0/sha512").read_text().strip()
    ok(onboard(ops, "undeploy", "//web:frontend", "1.2.0"))
    assert not (ops / "pods/web/frontend/1.2.0").exists()
    assert not (ops / "images" / old_image).exists()
    assert len(os.listdir(ops / "images")) == 1


def test_undeploy_keeps_images_another_installed_pod_uses(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.3.0"))))
    ok(onboard(ops, "undeploy", "//web:frontend", "1.2.0"))
    assert len(os.listdir(ops / "images")) == 1
    ok(onboard(ops, "verify"))


def test_undeploy_of_the_last_version_removes_the_pods_directories(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    ok(onboard(ops, "undeploy", "--force", "//web:frontend", "1.2.0"))
    assert os.listdir(ops / "pods") == []
    assert os.listdir(ops / "images") == []


def test_undeploy_of_an_unknown_version_fails(unchanging):
    assert "no installed version" in one_line_error(onboard(unchanging, "undeploy", "//web:frontend", "0.1"))


# -- verify -----------------------------------------------------------------


def test_verify_of_an_intact_root_succeeds(unchanging):
    assert "intact" in ok(onboard(unchanging, "verify")).stdout


def test_verify_reports_a_changed_volume_file(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    (ops / "pods/web/frontend/1.2.0/volumes/static/index.html").write_bytes(b"defaced")
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "//web:frontend 1.2.0: volumes/static/index.html: content changed "
        + result.stdout.split("content changed ", 1)[1].splitlines()[0]
    ]


def test_verify_reports_a_flipped_byte_in_an_image(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    image = next((ops / "images").iterdir()) / "image.aci"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 1
    image.write_bytes(bytes(data))
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert f"images/{image.parent.name}: image.aci" in result.stdout


def test_verify_reports_each_mismatch_on_its_own_line(release, ops):
    ok(onboard(ops, "deploy", str(make_bundle(release, "1.2.0"))))
    installed = ops / "pods/web/frontend/1.2.0"
    (installed / "files/frontend.service").unlink()
    (installed / "volumes/static/extra").write_bytes(b"x")
    os.chmod(installed / "volumes/static/index.html", 0o600)
    (next((ops / "images").iterdir()) / "sha512").write_text("0" * 128 + "\n")
    lines = onboard(ops, "verify").stdout.splitlines()
    assert len(lines) == 4
    assert any("files/frontend.service: missing" in line for line in lines)
    assert any("volumes/static/extra: unexpected file" in line for line in lines)
    assert any("volumes/static/index.html: mode 0600" in line for line in lines)
    assert any(": sha512: says" in line for line in lines)


# -- refusing bad content, leaving DIR as it was -------------------------------


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()  # bundle files are hard links into the release root: leave it alone
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_an_image_is_refused_and_dir_is_unchanged(release, unchanging):
    bundle = make_bundle(release, "1.3.0", image_version="1.3.0")
    flip_a_byte(bundle / "frontend/image.aci")
    before = tree(unchanging)
    line = one_line_error(onboard(unchanging, "deploy", str(bundle)))
    assert "frontend/image.aci" in line
    assert tree(unchanging) == before


def test_a_wrong_sha512_file_is_refused_and_dir_is_unchanged(release, unchanging):
    bundle = make_bundle(release, "1.3.0", image_version="1.3.0")
    (bundle / "frontend/sha512").unlink()
    (bundle / "frontend/sha512").write_text("ab" * 64 + "\n")
    before = tree(unchanging)
    line = one_line_error(onboard(unchanging, "deploy", str(bundle)))
    assert "frontend/sha512" in line
    assert tree(unchanging) == before


def test_a_volume_file_with_a_wrong_checksum_is_refused_and_dir_is_unchanged(release, unchanging):
    bundle = make_bundle(release, "1.3.0")
    flip_a_byte(bundle / "static/assets.tar.gz")
    before = tree(unchanging)
    line = one_line_error(onboard(unchanging, "deploy", str(bundle)))
    assert "static/assets.tar.gz: sha512 is" in line
    assert tree(unchanging) == before


@pytest.mark.parametrize("kind, says", [
    ("dotdot", "member '../escaped.txt' has a '..' component"),
    ("absolute", "member '/tmp/absolute.txt' has an absolute path"),
    ("symlink-escape", "member 'escape' is a symbolic link to '../../../../etc', outside its directory"),
    ("symlink-absolute", "member 'passwd' is a symbolic link to the absolute path '/etc/passwd'"),
    ("hardlink-escape", "member 'shadow' is a hard link to '../../etc/shadow', outside its directory"),
    ("setuid", "member 'bin/su' is setuid or setgid"),
    ("setgid", "member 'bin/sg' is setuid or setgid"),
    ("device", "member 'dev/sda' is a device or FIFO"),
    ("fifo", "member 'pipe' is a device or FIFO"),
    ("link-then-write-through", "member 'x' is unsafe"),
])
def test_a_hostile_volume_tarball_is_refused_and_dir_is_unchanged(release, unchanging, kind, says):
    bundle = make_bundle(release, "1.3.0", volume_version="2.0.0",
                         volume_files={"assets.tar.gz": hostile_tarball(kind)})
    before = tree(unchanging)
    line = one_line_error(onboard(unchanging, "deploy", str(bundle)))
    assert says in line
    assert "static/assets.tar.gz" in line
    assert tree(unchanging) == before


def test_a_bundle_tar_holding_a_symlink_where_pod_json_names_a_file_is_refused(release, ops, tmp_path):
    bundle = make_bundle(release)
    (bundle / "frontend.service").unlink()
    (bundle / "frontend.service").symlink_to("/etc/passwd")
    archive = tmp_path / "bundle.tar"
    subprocess.run(["tar", "-C", str(bundle), "-cf", str(archive), "."], check=True)
    assert "member './frontend.service' is not a regular file" in one_line_error(onboard(ops, "deploy", str(archive)))
    assert not (ops / "pods").exists()


def test_a_symlink_in_a_bundle_tar_that_pod_json_does_not_name_is_never_extracted(release, ops, tmp_path):
    bundle = make_bundle(release)
    (bundle / "link").symlink_to("/etc/passwd")
    archive = tmp_path / "bundle.tar"
    subprocess.run(["tar", "-C", str(bundle), "-cf", str(archive), "."], check=True)
    ok(onboard(ops, "deploy", str(archive)))
    assert not any(p.name == "link" for p in ops.rglob("*"))


# -- bad input: one line, non-zero, nothing changed -----------------------------


def test_a_directory_without_pod_json_is_refused(ops, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "pod.json: missing" in one_line_error(onboard(ops, "deploy", str(tmp_path / "empty")))


def test_a_pod_json_that_is_not_json_is_refused(release, ops):
    bundle = make_bundle(release)
    (bundle / "pod.json").unlink()
    (bundle / "pod.json").write_text("{not json")
    assert "pod.json: not valid JSON" in one_line_error(onboard(ops, "deploy", str(bundle)))


def test_a_pod_json_missing_a_key_is_refused(release, ops):
    bundle = make_bundle(release)
    doc = json.loads((bundle / "pod.json").read_text())
    del doc["manifest"]
    (bundle / "pod.json").unlink()
    (bundle / "pod.json").write_text(json.dumps(doc))
    assert "missing key 'manifest'" in one_line_error(onboard(ops, "deploy", str(bundle)))


def test_a_pod_json_with_a_path_leaving_the_bundle_is_refused(release, ops):
    bundle = make_bundle(release)
    doc = json.loads((bundle / "pod.json").read_text())
    doc["files"] = [{"path": "../../../../../../etc/passwd", "sha512": "a" * 128, "size": 1}]
    (bundle / "pod.json").unlink()
    (bundle / "pod.json").write_text(json.dumps(doc))
    assert "files[0]" in one_line_error(onboard(ops, "deploy", str(bundle)))


def test_a_pod_json_whose_version_is_current_is_refused(release, ops):
    bundle = make_bundle(release)
    doc = json.loads((bundle / "pod.json").read_text())
    doc["version"] = "current"
    (bundle / "pod.json").unlink()
    (bundle / "pod.json").write_text(json.dumps(doc))
    assert "version 'current' is reserved" in one_line_error(onboard(ops, "deploy", str(bundle)))


def test_a_missing_source_is_refused(ops, tmp_path):
    assert "no such file or directory" in one_line_error(onboard(ops, "deploy", str(tmp_path / "nope")))


def test_a_file_that_is_not_a_tar_is_refused(ops, tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball")
    assert "not a readable tar archive" in one_line_error(onboard(ops, "deploy", str(junk)))


def test_an_unreadable_source_is_refused(ops, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "neither a bundle directory" in one_line_error(onboard(ops, "deploy", str(fifo)))


def test_an_unsupported_url_scheme_is_refused(ops):
    assert "only http://, https:// and oci://" in one_line_error(onboard(ops, "deploy", "ftp://example.com/pod.json"))


def test_a_missing_command_is_a_one_line_usage_error(ops):
    result = onboard(ops)
    assert result.returncode == 2
    one_line_error(result)


def test_a_bad_option_value_is_a_one_line_usage_error(ops):
    result = onboard(ops, "deploy", "--attempts", "0", "x")
    assert result.returncode == 2
    one_line_error(result)


# -- the lock -----------------------------------------------------------------


def hold_lock(ops: Path) -> int:
    ops.mkdir(parents=True, exist_ok=True)
    fd = os.open(ops / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_two_deploys_at_once_both_succeed_one_after_the_other(release, ops):
    first, second = make_bundle(release, "1.2.0"), make_bundle(release, "1.3.0", image_version="1.3.0")
    fd = hold_lock(ops)
    procs = [subprocess.Popen([OPS_ONBOARD, "--root", str(ops), "deploy", str(b)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for b in (first, second)]
    try:
        # Both are now blocked on the lock (each says so), so they run one after the other.
        for proc in procs:
            assert "waiting for" in proc.stderr.readline()
    finally:
        os.close(fd)
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert sorted(d for d in os.listdir(ops / "pods/web/frontend") if d[0].isdigit()) == ["1.2.0", "1.3.0"]
    ok(onboard(ops, "verify"))


def test_a_command_gives_up_waiting_for_the_lock_after_its_timeout(release, ops):
    bundle = make_bundle(release)
    fd = hold_lock(ops)
    try:
        result = onboard(ops, "--lock-timeout", "0.2", "deploy", str(bundle))
    finally:
        os.close(fd)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("ops-onboard: gave up after 0.2s waiting for")
    assert not (ops / "pods").exists()


# -- image ids (in-process: the check every image goes through) -------------------


def tar_and_id(tmp_path: Path) -> tuple[bytes, str]:
    """The uncompressed tar of a small ACI, and its id."""
    write_aci(tmp_path / "x.aci", {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "x"},
              {"bin/x": b"x" * 100_000})
    raw = gzip.decompress((tmp_path / "x.aci").read_bytes())
    return raw, "sha512-" + hashlib.sha512(raw).hexdigest()


def check_image(data: bytes, image_id: str, piece: int = 777) -> None:
    check = AciIdCheck(image_id, "x.aci")
    for i in range(0, len(data), piece):
        check.update(memoryview(data)[i:i + piece])
    check.finish()


def test_image_id_of_a_multi_member_gzip_is_the_hash_of_the_whole_tar(tmp_path):
    raw, image_id = tar_and_id(tmp_path)
    half = len(raw) // 2
    check_image(gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + b"\0" * 10, image_id)


def test_image_id_of_an_uncompressed_aci_is_the_hash_of_its_bytes(tmp_path):
    raw, image_id = tar_and_id(tmp_path)
    check_image(raw, image_id)


def test_image_id_check_refuses_a_truncated_gzip(tmp_path):
    raw, image_id = tar_and_id(tmp_path)
    with pytest.raises(IntegrityError, match="truncated"):
        check_image(gzip.compress(raw)[:-100], image_id)


def test_image_id_check_refuses_garbage_after_the_gzip_stream(tmp_path):
    raw, image_id = tar_and_id(tmp_path)
    with pytest.raises(IntegrityError, match="garbage"):
        check_image(gzip.compress(raw) + b"trailing junk", image_id)


def test_image_id_check_refuses_another_image(tmp_path):
    raw, image_id = tar_and_id(tmp_path)
    with pytest.raises(IntegrityError, match="pod.json says"):
        check_image(gzip.compress(raw + b"\0" * 512), image_id)


# == moved from test_review_deploy.py (adversarial review of the deploy side)


# ---------------------------------------------------------------- helpers of the tests moved from test_review_deploy.py


GNU_TAR = shutil.which("tar")


def refused(result: subprocess.CompletedProcess) -> str:
    """Failed with exit 1 and one line `ops-onboard: ...` (no internal error); returns the line."""
    return one_line_error(result, status=1)


def plain_tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """An uncompressed tar of ("file", name, data) and ("link", name, target) members, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, value, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                tar.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def pod_with_volume(release: ReleaseRoot, files: dict[str, bytes]) -> Path:
    image = release.image("web", "frontend", "1.1.0")
    volume = release.volume("web", "static", "1.0.0", files)
    return release.pod("prod", "web", "frontend", "1.2.0", images=[image],
                       volumes=[Mount("static", volume, "/srv/static")])


def bundle_with_pod_json(tmp_path: Path, raw: bytes) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "pod.json").write_bytes(raw)
    return bundle


# ---------------------------------------------------------------- volume tarballs that only escape together


# `a.tar` holds the link `l -> d/e/e/.../e/../../.../<target>`: lexically inside the
# volume, and harmless while `d/e` does not exist. `d/b.tar`, extracted into `d/`, adds
# `e -> .`: inside `d/`, so harmless on its own. Together, `l` climbs out of DIR.
HOPS = 20  # below the kernel's 40 symlinks per lookup


def escaping_pair(target: Path) -> dict[str, bytes]:
    link = "d" + "/e" * HOPS + "/.." * (HOPS + 1) + "/" + str(target).lstrip("/")
    return {"a.tar": plain_tar([("link", "l", link)]), "d/b.tar": plain_tar([("link", "e", ".")])}


def test_a_link_made_to_escape_by_a_later_volume_tarball_is_refused(release, ops, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    pod_dir = pod_with_volume(release, escaping_pair(outside))
    line = refused(onboard(ops, "deploy", str(pod_dir)))
    assert "resolving outside" in line
    assert not (ops / "pods").exists()


def test_a_volume_file_is_never_written_through_a_link_out_of_dir(release, ops, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    files = escaping_pair(outside)
    files["l/evil.txt"] = b"written outside DIR\n"
    files["l/more.tar"] = plain_tar([("file", "evil2.txt", b"extracted outside DIR\n")])
    pod_dir = pod_with_volume(release, files)
    refused(onboard(ops, "deploy", str(pod_dir)))
    assert os.listdir(outside) == []
    assert not (ops / "pods").exists()


# ---------------------------------------------------------------- hostile tarball members


@pytest.mark.skipif(GNU_TAR is None, reason="GNU tar is needed to write a sparse member")
def test_a_sparse_member_in_a_volume_tarball_is_refused(release, ops, tmp_path):
    # 10 KiB of tar declaring 64 MiB (or 8 EiB: hashing it would never end) that it does not hold.
    hole = tmp_path / "hole"
    with open(hole, "wb") as f:
        f.truncate(64 << 20)
    archive = tmp_path / "sparse.tar"
    subprocess.run([GNU_TAR, "--format=gnu", "-S", "-C", str(tmp_path), "-cf", str(archive), "hole"], check=True)
    pod_dir = pod_with_volume(release, {"assets.tar": archive.read_bytes()})
    line = refused(onboard(ops, "deploy", str(pod_dir)))
    assert "member 'hole' is a sparse file" in line
    assert not (ops / "pods").exists()


def test_a_volume_tarball_nested_too_deeply_is_refused_in_one_line(release, ops):
    pod_dir = pod_with_volume(release, {"deep.tar": plain_tar([("file", "a/" * 1500 + "x", b"x")])})
    line = refused(onboard(ops, "deploy", str(pod_dir)))
    assert "static/deep.tar" in line and "too deeply" in line
    assert not (ops / "pods").exists()


# ---------------------------------------------------------------- hostile pod.json


def test_a_deeply_nested_pod_json_is_refused_as_invalid_json(ops, tmp_path):
    bundle = bundle_with_pod_json(tmp_path, b"[" * 100_000 + b"]" * 100_000)
    assert "pod.json: not valid JSON" in refused(onboard(ops, "deploy", str(bundle)))


def test_a_pod_json_with_a_number_too_long_to_read_is_refused_as_invalid_json(ops, tmp_path):
    bundle = bundle_with_pod_json(tmp_path, b'{"name": ' + b"1" * 5000 + b"}")
    assert "pod.json: not valid JSON" in refused(onboard(ops, "deploy", str(bundle)))


def test_a_pod_json_with_a_duplicate_key_is_refused(release, ops, tmp_path):
    raw = (standard_pod(release) / "pod.json").read_bytes()
    # Another JSON reader may keep the first of two keys: two readers, two different pods.
    doubled = raw.replace(b'"images":', b'"images": [], "images":', 1)
    bundle = bundle_with_pod_json(tmp_path, doubled)
    line = refused(onboard(ops, "deploy", str(bundle)))
    assert "duplicate key 'images'" in line


def test_a_pod_json_with_a_hundred_thousand_volumes_is_checked_without_stalling(ops, tmp_path):
    # The duplicate-name check was quadratic: ~10^10 steps here, minutes under DIR's lock.
    n = 100_000
    names = [f"v{i}" for i in range(n)] + ["v0"]
    doc = {
        "name": "//web:frontend", "version": "1", "channel": "prod", "revision": None, "images": [],
        "volumes": [{"label": "//web:static", "name": name, "version": "1", "files": []} for name in names],
        "files": [],
        "manifest": {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [],
                     "volumes": [{"name": name, "kind": "host"} for name in names]},
    }
    bundle = bundle_with_pod_json(tmp_path, json.dumps(doc).encode())
    # The timeout only bounds the run; the assertion is on the message.
    line = refused(onboard(ops, "deploy", str(bundle), timeout=120))
    assert "name 'v0' is used by more than one image or volume" in line


# ---------------------------------------------------------------- verify after tampering


@pytest.fixture
def installed(release, ops) -> Path:
    ok(onboard(ops, "deploy", str(standard_pod(release))))
    return ops / "pods/web/frontend"


def test_verify_reports_a_version_whose_installed_json_was_removed(ops, installed):
    (installed / "1.2.0/installed.json").unlink()
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert "//web:frontend 1.2.0: installed.json: missing or unreadable" in result.stdout


def test_verify_reports_an_installed_json_of_the_wrong_shape(ops, installed):
    (installed / "1.2.0/installed.json").write_text('{"tree": {"pod.json": 1}, "images": []}\n')
    result = onboard(ops, "verify")
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr
    assert "//web:frontend 1.2.0: installed.json: missing or unreadable" in result.stdout


def test_undeploy_of_a_version_with_an_installed_json_of_the_wrong_shape_works(ops, installed):
    (installed / "1.2.0/installed.json").write_text('{"tree": {}, "images": []}\n')
    ok(onboard(ops, "undeploy", "--force", "//web:frontend", "1.2.0"))
    assert os.listdir(ops / "pods") == []


def test_verify_reports_a_current_that_is_not_a_link(ops, installed):
    (installed / "current").unlink()
    (installed / "current").write_text("1.2.0\n")
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert "//web:frontend: current is not a symbolic link" in result.stdout


def test_verify_reports_a_current_pointing_out_of_its_pod_directory(ops, installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(installed / "1.2.0", elsewhere, symlinks=True)
    (installed / "current").unlink()
    (installed / "current").symlink_to(elsewhere)
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert f"//web:frontend: current points to {str(elsewhere)!r}, which is not installed" in result.stdout


def test_verify_reports_a_current_whose_only_version_was_removed(ops, installed):
    shutil.rmtree(installed / "1.2.0")
    result = onboard(ops, "verify")
    assert result.returncode == 1
    assert "//web:frontend: current points to '1.2.0', which is not installed" in result.stdout


def test_verify_reports_nothing_on_an_intact_root_after_all(ops, installed):
    before = tree(ops)
    assert "intact" in ok(onboard(ops, "verify")).stdout
    assert tree(ops) == before


# ---------------------------------------------------------------- --root


def test_verify_of_a_root_that_is_a_file_fails(tmp_path):
    root = tmp_path / "not-a-dir"
    root.write_text("")
    line = refused(onboard(root, "verify"))
    assert f"{root} is not a directory" in line


# ---------------------------------------------------------------- a bundle directory prepared by someone else


def test_a_pod_file_its_owner_kept_private_is_not_published(ops, tmp_path):
    # ops-onboard often runs as root and installs files readable by everyone: a symlink in a
    # bundle directory must not turn a file only root may read (/etc/shadow) into one anyone may.
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    doc = {"name": "//web:leak", "version": "1", "channel": "prod", "revision": None, "images": [],
           "volumes": [], "files": [{"path": "shadow", **pin(secret)}],
           "manifest": {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [], "volumes": []}}
    bundle = bundle_with_pod_json(tmp_path, json.dumps(doc).encode())
    (bundle / "shadow").symlink_to(secret)
    line = refused(onboard(ops, "deploy", str(bundle)))
    assert "shadow: not readable by everyone" in line
    assert not (ops / "pods").exists()
