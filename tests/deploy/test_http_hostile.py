"""ops-onboard deploy by URL against a server that means harm.

Each test drives the real `ops-onboard deploy http://...` and asserts what
the deploy promises whatever a server does: it ends (within the subprocess
timeout), in bounded memory (the child's peak RSS) and disk (no file it
writes may grow past RLIMIT_FSIZE: a regression is killed, not left to fill
the disk), with DIR exactly as it was, and with one line saying what was
wrong, never a traceback.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle

from hostile import OPS_ONBOARD
from httpservers import StaticServer
from podfactory import ReleaseRoot, standard_pod, tree
from sshkeys import HAVE_SSH_KEYGEN, allowed_signers, make_key

POD = "/channels/prod/web/frontend/{version}/"
SECONDS = 60  # every run here ends well within this, or the test fails
MAX_RSS_MIB = 200  # a deploy needs about 50 MiB, whatever it is sent
MAX_FILE = 64 << 20  # bytes; the largest file here is 5 MiB


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE, MAX_FILE))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mib: float


def onboard(root: Path, *args: str) -> Run:
    """The real ops-onboard, killed if it runs longer than SECONDS; with its peak memory."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([OPS_ONBOARD, "--root", str(root), *args], stdout=out, stderr=err,
                                preexec_fn=_limit_files)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(SECONDS, kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        assert not killed.is_set(), f"ops-onboard {' '.join(args)} still ran after {SECONDS}s"
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss / 1024)


def refused(run: Run) -> str:
    """Exit 1, bounded memory, one line `ops-onboard: ...` at the end, no traceback; returns that line."""
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ops-onboard: "), run.stderr
    assert run.max_rss_mib < MAX_RSS_MIB, f"peak memory {run.max_rss_mib:.0f} MiB"
    return last


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> ReleaseRoot:
    """1.2.0 (also as a bundle), and 1.4.0 with a 5 MiB image of its own."""
    release = ReleaseRoot(tmp_path_factory.mktemp("site") / "release")
    write_bundle(standard_pod(release, "1.2.0"), release.root / "bundles/prod/web/frontend/1.2.0")
    standard_pod(release, "1.4.0", image_version="1.4.0", big=5 << 20)
    return release


@pytest.fixture
def server(site):
    with StaticServer(site.root) as server:
        yield server


@pytest.fixture
def elsewhere(site):
    """The same files on another host (`localhost`, where the pod is at `127.0.0.1`)."""
    with StaticServer(site.root) as other:
        yield other


@pytest.fixture
def deployed(site, tmp_path) -> Path:
    """A DIR where 1.2.0 is installed and current: what a hostile deploy must leave as it was."""
    root = tmp_path / "ops"
    run = onboard(root, "deploy", str(site.root / "bundles/prod/web/frontend/1.2.0"))
    assert run.returncode == 0, run.stderr
    return root


def url(server: StaticServer, version: str = "1.4.0", rel: str = "pod.json") -> str:
    return server.url + POD.format(version=version) + rel


def aci_size(site: ReleaseRoot, version: str = "1.4.0") -> int:
    return (site.root / POD.format(version=version).strip("/") / "frontend/image.aci").stat().st_size


# -- size: nothing past what pod.json declares -------------------------------------


def test_an_endless_image_body_is_refused_at_its_declared_size(site, server, deployed):
    server.always("frontend/image.aci", "endless")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "frontend/image.aci" in line and f"more than the {aci_size(site)} bytes" in line
    assert tree(deployed) == before


def test_an_endless_chunked_image_body_is_refused_at_its_declared_size(site, server, deployed):
    server.always("frontend/image.aci", "endless-chunked")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "frontend/image.aci" in line and f"more than the {aci_size(site)} bytes" in line
    assert tree(deployed) == before


def test_a_content_length_of_a_terabyte_is_refused_before_the_body(site, server, deployed):
    server.always("frontend/image.aci", "endless-length")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert f"more than the {aci_size(site)} bytes pod.json pins (the server sends {1 << 40})" in line
    assert tree(deployed) == before


def test_a_volume_file_longer_than_declared_is_refused(server, deployed):
    server.always("static/assets.tar.gz", "longer")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "static/assets.tar.gz" in line and "more than the" in line
    assert tree(deployed) == before


def test_a_content_length_other_than_declared_is_refused_without_retrying(server, deployed):
    server.always("frontend/image.aci", "wrong-length")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--retry-delay", "0.01", url(server)))
    assert "frontend/image.aci" in line and "pod.json pins" in line
    assert len([p for p in server.paths() if p.endswith("image.aci")]) == 1
    assert tree(deployed) == before


def test_a_body_announced_shorter_than_pinned_is_refused_without_retrying(server, deployed):
    server.always("frontend/image.aci", "shorter")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--attempts", "2", "--retry-delay", "0.01", url(server)))
    assert "frontend/image.aci" in line and "pod.json pins" in line
    assert len([p for p in server.paths() if p.endswith("image.aci")]) == 1
    assert tree(deployed) == before


# -- pod.json: a small fixed cap ----------------------------------------------------


def test_an_endless_pod_json_is_refused_at_one_mib(server, deployed):
    server.always("pod.json", "endless")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "pod.json: more than the 1048576 bytes it may have" in line
    assert tree(deployed) == before


def test_an_endless_chunked_pod_json_is_refused_at_one_mib(server, deployed):
    server.always("pod.json", "endless-chunked")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "pod.json: more than the 1048576 bytes it may have" in line
    assert tree(deployed) == before


@pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen (openssh-client) is not installed")
def test_an_endless_signature_is_refused_at_64_kib(server, deployed, tmp_path):
    signers = allowed_signers(tmp_path / "allowed", ("ops@example.com", make_key(tmp_path / "keys", "ops"), ""))
    server.always("pod.json.sig", "endless")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--allowed-signers", str(signers), url(server)))
    assert "not signed" in line and "pod.json.sig: more than the 65536 bytes it may have" in line
    assert tree(deployed) == before


def test_a_pod_json_announced_huge_is_refused_before_its_body(server, deployed):
    server.always("pod.json", "endless-length")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert f"pod.json: {1 << 40} bytes, more than the 1048576 it may have" in line
    assert tree(deployed) == before


# -- time: one deadline for the whole deploy -----------------------------------------


def test_a_server_trickling_a_byte_a_second_is_cut_off_at_the_deadline(server, deployed):
    server.always("frontend/image.aci", "trickle")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--deadline", "3", url(server)))
    assert "frontend/image.aci" in line and "deadline of 3s" in line
    assert tree(deployed) == before


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(server, deployed):
    server.always("pod.json", "trickle-headers")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--deadline", "2", url(server)))
    assert "pod.json" in line and "deadline of 2s" in line
    assert tree(deployed) == before


def test_the_deadline_also_ends_the_waits_between_retries(server, deployed):
    server.always("frontend/image.aci", "503")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", "--attempts", "50", "--retry-delay", "1", "--deadline", "2",
                           url(server)))
    assert "deadline of 2s" in line
    assert tree(deployed) == before


# -- place: nothing from another host -------------------------------------------------


def test_an_image_redirected_to_another_host_is_refused(server, elsewhere, deployed):
    server.redirect_to(f"http://localhost:{elsewhere.port}")
    server.always("frontend/image.aci", "redirect")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "frontend/image.aci: HTTP 302 redirect to http://localhost:" in line and "refused" in line
    assert elsewhere.paths() == []
    assert tree(deployed) == before


def test_a_pod_json_redirected_to_another_host_is_refused(server, elsewhere, deployed):
    server.redirect_to(f"http://localhost:{elsewhere.port}")
    server.always("pod.json", "redirect")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))
    assert "redirect to http://localhost:" in line
    assert elsewhere.paths() == []
    assert tree(deployed) == before


def test_a_redirect_to_another_port_of_the_same_host_is_refused(server, elsewhere, deployed):
    server.redirect_to(elsewhere.url)
    server.always("frontend/image.aci", "redirect")
    before = tree(deployed)
    refused(onboard(deployed, "deploy", url(server)))
    assert elsewhere.paths() == []
    assert tree(deployed) == before


def test_a_redirect_on_the_same_host_is_followed(server, tmp_path):
    server.redirect_to(server.url, rewrite=("/1.2.0/", "/1.4.0/"))
    server.fail("/1.2.0/pod.json", "redirect")  # 1.2.0's pod.json -> 1.4.0's, like a "latest" link
    run = onboard(tmp_path / "ops", "deploy", url(server, "1.2.0"))
    assert run.returncode == 0, run.stderr
    assert os.readlink(tmp_path / "ops/pods/web/frontend/current") == "1.4.0"


def test_a_failed_download_stops_the_others_at_once(server, deployed):
    server.always("frontend/image.aci", "trickle")  # would take days
    server.always("static/assets.tar.gz", "404")
    before = tree(deployed)
    line = refused(onboard(deployed, "deploy", url(server)))  # within SECONDS, not at the deadline
    assert line.endswith("static/assets.tar.gz: HTTP 404 Injected failure")
    assert tree(deployed) == before
