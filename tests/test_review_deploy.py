"""Adversarial review of the deploy side: hostile pods, tarballs, servers and tampering.

Every test drives the real `ops-onboard` console script; servers listen on
127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from podfactory import Mount, ReleaseRoot, standard_pod, tree

_BESIDE = Path(sys.executable).parent / "ops-onboard"
OPS_ONBOARD = str(_BESIDE) if _BESIDE.exists() else (shutil.which("ops-onboard") or "ops-onboard")
GNU_TAR = shutil.which("tar")


def onboard(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([OPS_ONBOARD, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def refused(result: subprocess.CompletedProcess) -> str:
    """Failed with exit 1 and one line `ops-onboard: ...` (no internal error); returns the line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ops-onboard: "), result.stderr
    assert "internal error" not in lines[0]
    return lines[0]


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


# -- volume tarballs that only escape together -------------------------------------------

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


# -- hostile tarball members ----------------------------------------------------------------


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


# -- hostile pod.json ----------------------------------------------------------------------


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


# -- HTTP ----------------------------------------------------------------------------------


def test_a_redirect_to_ftp_is_not_followed(ops):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    contacted: list[bool] = []

    def ftp_server() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        contacted.append(True)
        conn.sendall(b"421 closing\r\n")
        conn.close()

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"ftp://127.0.0.1:{listener.getsockname()[1]}/pod.json")
            self.send_header("Content-Length", "0")
            self.end_headers()

    ftp = threading.Thread(target=ftp_server, daemon=True)
    ftp.start()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/channels/prod/web/frontend/1.2.0/pod.json"
        line = refused(onboard(ops, "deploy", "--attempts", "1", "--timeout", "5", url))
    finally:
        httpd.shutdown()
        httpd.server_close()
        listener.close()
        ftp.join(timeout=10)
    assert "redirect" in line and "ftp://" in line
    assert contacted == []


# -- verify after tampering ----------------------------------------------------------------


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


# -- --root ---------------------------------------------------------------------------------


def test_verify_of_a_root_that_is_a_file_fails(tmp_path):
    root = tmp_path / "not-a-dir"
    root.write_text("")
    line = refused(onboard(root, "verify"))
    assert f"{root} is not a directory" in line


# -- a bundle directory prepared by someone else ----------------------------------------------


def test_a_pod_file_its_owner_kept_private_is_not_published(ops, tmp_path):
    # ops-onboard often runs as root and installs files readable by everyone: a symlink in a
    # bundle directory must not turn a file only root may read (/etc/shadow) into one anyone may.
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    doc = {"name": "//web:leak", "version": "1", "channel": "prod", "revision": None, "images": [],
           "volumes": [], "files": ["shadow"],
           "manifest": {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [], "volumes": []}}
    bundle = bundle_with_pod_json(tmp_path, json.dumps(doc).encode())
    (bundle / "shadow").symlink_to(secret)
    line = refused(onboard(ops, "deploy", str(bundle)))
    assert "shadow: not readable by everyone" in line
    assert not (ops / "pods").exists()
