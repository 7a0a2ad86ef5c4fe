"""ops-onboard deploy by URL, against real servers on 127.0.0.1 serving a release root."""

from __future__ import annotations

import http.server
import os
import pty
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle

from hostile import OPS_ONBOARD, one_line_error
from httpservers import Nginx, StaticServer, free_port, nginx_available
from podfactory import ReleaseRoot, standard_pod, tree

POD_URL = "/channels/prod/web/frontend/{version}/pod.json"


def onboard(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPS_ONBOARD, "--root", str(root), *args], capture_output=True, text=True)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def failed(result: subprocess.CompletedProcess) -> str:
    """The run failed, ending with one `ops-onboard: ...` line and no traceback; returns that line."""
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ops-onboard: ")
    return last


def installed_picture(root: Path) -> tuple[dict, dict]:
    """What is installed under a root, with the root itself factored out."""
    files = {rel: entry for rel, entry in tree(root).items()
             if not rel.endswith(("pod-manifest.json", "installed.json"))}
    manifests = {str(p.relative_to(root)): p.read_text().replace(str(root), "<DIR>")
                 for p in root.glob("pods/**/pod-manifest.json")}
    return files, manifests


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> ReleaseRoot:
    """A release root: 1.2.0 and 1.3.0 share an image; 1.4.0 has a 5 MiB one of its own."""
    release = ReleaseRoot(tmp_path_factory.mktemp("site") / "release")
    write_bundle(standard_pod(release, "1.2.0"), release.root / "bundles/prod/web/frontend/1.2.0")
    standard_pod(release, "1.3.0")
    standard_pod(release, "1.4.0", image_version="1.4.0", big=5 << 20)
    return release


@pytest.fixture
def server(site):
    with StaticServer(site.root) as server:
        yield server


@pytest.fixture(scope="module")
def nginx(site, tmp_path_factory):
    if not nginx_available():
        pytest.skip("nginx (Debian nginx-light) is not installed")
    with Nginx(site.root, tmp_path_factory.mktemp("nginx")) as nginx:
        yield nginx


def deploy_bundle(site: ReleaseRoot, root: Path) -> Path:
    ok(onboard(root, "deploy", str(site.root / "bundles/prod/web/frontend/1.2.0")))
    return root


@pytest.fixture(scope="module")
def deployed(site, tmp_path_factory) -> Path:
    """A root where 1.2.0 is installed from its bundle, shared by the tests that leave it as it is."""
    return deploy_bundle(site, tmp_path_factory.mktemp("deployed") / "ops")


def image_requests(server: StaticServer) -> list[str]:
    return [p for p in server.paths() if p.endswith(("image.aci", "/sha512"))]


# -- same result as a bundle ------------------------------------------------------


def test_deploy_by_url_from_http_server_installs_what_the_bundle_installs(site, server, deployed, tmp_path):
    by_url = tmp_path / "by-url"
    ok(onboard(by_url, "deploy", server.url + POD_URL.format(version="1.2.0")))
    assert installed_picture(by_url) == installed_picture(deployed)


def test_deploy_by_url_from_nginx_installs_what_the_bundle_installs(site, nginx, deployed, tmp_path):
    by_url = tmp_path / "by-url"
    ok(onboard(by_url, "deploy", nginx.url + POD_URL.format(version="1.2.0")))
    assert installed_picture(by_url) == installed_picture(deployed)


def test_deploy_by_url_fetches_artifacts_relative_to_pod_json(site, nginx, tmp_path):
    ok(onboard(tmp_path / "ops", "deploy", nginx.url + POD_URL.format(version="1.4.0")))
    log = nginx.access_log()
    assert "GET /channels/prod/web/frontend/1.4.0/frontend/image.aci HTTP/1.1\" 200" in log
    assert "GET /channels/prod/web/frontend/1.4.0/static/assets.tar.gz HTTP/1.1\" 200" in log


def test_a_redeploy_whose_images_are_installed_fetches_no_image(site, server, tmp_path):
    root = deploy_bundle(site, tmp_path / "ops")
    ok(onboard(root, "deploy", server.url + POD_URL.format(version="1.3.0")))
    assert image_requests(server) == []
    assert os.readlink(root / "pods/web/frontend/current") == "1.3.0"


def test_a_redeploy_of_an_installed_version_fetches_only_pod_json(server, deployed):
    result = ok(onboard(deployed, "deploy", server.url + POD_URL.format(version="1.2.0")))
    assert "already installed and intact" in result.stdout
    assert server.paths() == [POD_URL.format(version="1.2.0")]


def test_an_image_and_a_volume_file_are_fetched_at_the_same_time(server, tmp_path):
    server.hold("frontend/image.aci", until="static/assets.tar.gz")  # one at a time would wait in vain
    ok(onboard(tmp_path / "ops", "deploy", "--attempts", "1", server.url + POD_URL.format(version="1.4.0")))


# -- transient failures are retried ------------------------------------------------


def test_a_server_answering_500_twice_then_succeeding_is_retried(server, tmp_path):
    server.fail("frontend/image.aci", "500", "500")
    result = ok(onboard(tmp_path / "ops", "deploy", "--retry-delay", "0.01",
                        server.url + POD_URL.format(version="1.2.0")))
    assert result.stderr.count("HTTP 500") == 2
    assert [p for p in server.paths() if p.endswith("image.aci")] == [
        "/channels/prod/web/frontend/1.2.0/frontend/image.aci"] * 3


def test_a_truncated_download_is_fetched_again(server, tmp_path):
    server.fail("frontend/image.aci", "truncate")
    result = ok(onboard(tmp_path / "ops", "deploy", "--retry-delay", "0.01",
                        server.url + POD_URL.format(version="1.4.0")))
    assert "truncated" in result.stderr
    ok(onboard(tmp_path / "ops", "verify"))


def test_a_truncated_download_resumes_where_it_stopped_when_the_server_takes_ranges(server, tmp_path):
    server.honour_ranges()
    server.fail("frontend/image.aci", "truncate")
    ok(onboard(tmp_path / "ops", "deploy", "--retry-delay", "0.01", server.url + POD_URL.format(version="1.4.0")))
    ranges = [r for p, r in server.requests if p.endswith("image.aci")]
    assert ranges[0] is None
    assert ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    ok(onboard(tmp_path / "ops", "verify"))


def test_a_server_that_does_not_answer_in_time_is_retried(server, tmp_path):
    server.fail("frontend/sha512", "stall")
    result = ok(onboard(tmp_path / "ops", "deploy", "--timeout", "0.3", "--retry-delay", "0.01",
                        server.url + POD_URL.format(version="1.2.0")))
    assert "timed out" in result.stderr


# -- and given up on, leaving DIR as it was ---------------------------------------


def test_a_server_that_always_truncates_is_given_up_on_and_dir_is_unchanged(server, deployed):
    server.always("frontend/image.aci", "truncate")
    before = tree(deployed)
    line = failed(onboard(deployed, "deploy", "--attempts", "2", "--retry-delay", "0.01",
                          server.url + POD_URL.format(version="1.4.0")))
    assert "frontend/image.aci" in line and "gave up after 2 attempts" in line
    assert tree(deployed) == before


def test_a_server_that_keeps_failing_is_given_up_on_and_dir_is_unchanged(server, deployed):
    server.always("static/assets.tar.gz", "503")
    before = tree(deployed)
    line = failed(onboard(deployed, "deploy", "--attempts", "3", "--retry-delay", "0.01",
                          server.url + POD_URL.format(version="1.4.0")))
    assert "HTTP 503" in line and "gave up after 3 attempts" in line
    assert tree(deployed) == before


def test_a_corrupted_image_is_refused_without_retrying_and_dir_is_unchanged(server, deployed):
    server.fail("frontend/image.aci", "corrupt")
    before = tree(deployed)
    line = failed(onboard(deployed, "deploy", server.url + POD_URL.format(version="1.4.0")))
    # A flipped byte fails gzip's own check, or else the image id.
    assert "frontend/image.aci" in line and ("pod.json says" in line or "not a valid gzip" in line)
    assert len([p for p in server.paths() if p.endswith("image.aci")]) == 1
    assert tree(deployed) == before


def test_a_corrupted_volume_file_is_refused_and_dir_is_unchanged(server, deployed):
    server.fail("static/assets.tar.gz", "corrupt")
    before = tree(deployed)
    line = failed(onboard(deployed, "deploy", server.url + POD_URL.format(version="1.3.0")))
    assert "static/assets.tar.gz: sha512 is" in line
    assert tree(deployed) == before


def test_a_missing_artifact_is_refused_with_its_url(server, deployed):
    server.fail("frontend.service", "404")
    before = tree(deployed)
    line = failed(onboard(deployed, "deploy", server.url + POD_URL.format(version="1.3.0")))
    assert line.endswith("/channels/prod/web/frontend/1.3.0/frontend.service: HTTP 404 Injected failure")
    assert tree(deployed) == before


def test_a_url_without_a_pod_json_is_refused(server, tmp_path):
    line = failed(onboard(tmp_path / "ops", "deploy", server.url + POD_URL.format(version="9.9.9")))
    assert "9.9.9/pod.json: HTTP 404" in line


def test_a_url_where_nothing_listens_is_refused_after_the_retries(tmp_path):
    url = f"http://127.0.0.1:{free_port()}" + POD_URL.format(version="1.2.0")
    line = failed(onboard(tmp_path / "ops", "deploy", "--attempts", "2", "--retry-delay", "0.01", url))
    assert "connection refused" in line and "gave up after 2 attempts" in line


# -- progress -------------------------------------------------------------------------


def test_progress_of_a_large_download_is_shown_on_a_terminal(server, tmp_path):
    leader, follower = pty.openpty()
    proc = subprocess.Popen([OPS_ONBOARD, "--root", str(tmp_path / "ops"), "deploy",
                             server.url + POD_URL.format(version="1.4.0")],
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait() == 0
    text = shown.decode()
    assert "frontend/image.aci" in text and "100%" in text and "B/s" in text
    assert "static/assets.tar.gz" not in text  # small files show no progress


def test_no_progress_is_shown_when_stderr_is_not_a_terminal(server, tmp_path):
    result = ok(onboard(tmp_path / "ops", "deploy", server.url + POD_URL.format(version="1.4.0")))
    assert result.stderr == ""


# ---------------------------------------------------------------- redirects (moved from test_review_deploy.py)


def refused(result: subprocess.CompletedProcess) -> str:
    """Failed with exit 1 and one line `ops-onboard: ...` (no internal error); returns the line."""
    return one_line_error(result, status=1)


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
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the FTP thread waits in: no 10 s wait
        listener.close()
        ftp.join(timeout=10)
    assert "redirect" in line and "ftp://" in line
    assert contacted == []
