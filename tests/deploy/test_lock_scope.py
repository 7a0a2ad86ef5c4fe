"""DIR's lock is held only around a deploy's commit, never while it downloads or checks.

A web server holds back a bundle's image until the test lets it go: while the
deploy waits for it, other commands on the same DIR run at once (with a lock
timeout far shorter than the wait), and the deploy still completes after.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading

import pytest

from podrelease.build.bundles import write_bundle

from hostile import OPS_ONBOARD, onboard
from podfactory import ReleaseRoot, standard_pod


class _Held(http.server.SimpleHTTPRequestHandler):
    held: str
    reached: threading.Event
    go: threading.Event

    def do_GET(self):
        if self.path.lstrip("/") == self.held:
            self.reached.set()
            self.go.wait(60)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def held_server(tmp_path):
    """A server of //web:frontend 2.0.0's bundle that holds back its volume file.

    Every deploy fetches the volume file (an image already installed is not fetched)."""
    held = "static/assets.tar.gz"
    release = ReleaseRoot(tmp_path / "release")
    bundle = tmp_path / "bundle"
    write_bundle(standard_pod(release, version="2.0.0"), bundle)
    reached, go = threading.Event(), threading.Event()
    handler = type("Held", (_Held,), {"held": held, "reached": reached, "go": go})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(bundle)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", reached, go
    finally:
        go.set()
        server.shutdown()
        server.server_close()


def test_other_commands_run_while_a_deploy_downloads(held_server, tmp_path):
    url, reached, go = held_server
    ops = tmp_path / "ops"
    release = ReleaseRoot(tmp_path / "first")
    first = tmp_path / "first-bundle"
    write_bundle(standard_pod(release, version="1.0.0"), first)
    assert onboard(ops, "deploy", str(first)).returncode == 0

    deploy = subprocess.Popen([OPS_ONBOARD, "--root", str(ops), "deploy", url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reached.wait(60), "the deploy never asked for the volume"
        for command in (("--lock-timeout", "0.5", "activate", "//web:frontend", "1.0.0"),
                        ("--lock-timeout", "0.5", "list"),
                        ("--lock-timeout", "0.5", "verify")):
            result = onboard(ops, *command)
            assert result.returncode == 0, f"{command}: {result.stderr}"
    finally:
        go.set()
        out, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 0, err
    assert os.readlink(ops / "pods/web/frontend/current") == "2.0.0"


def test_a_deploy_whose_reused_image_was_removed_meanwhile_prepares_again(held_server, tmp_path):
    # 1.0.0 and 2.0.0 share their image. 2.0.0's deploy saw it installed and reuses it; while
    # 2.0.0 downloads its volume, 1.0.0 (the image's only user) is undeployed, image and all.
    url, reached, go = held_server
    ops = tmp_path / "ops"
    release = ReleaseRoot(tmp_path / "first")
    first = tmp_path / "first-bundle"
    write_bundle(standard_pod(release, version="1.0.0"), first)
    assert onboard(ops, "deploy", str(first)).returncode == 0
    (image,) = (ops / "images").iterdir()

    deploy = subprocess.Popen([OPS_ONBOARD, "--root", str(ops), "deploy", url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reached.wait(60), "the deploy never asked for the volume"
        removed = onboard(ops, "--lock-timeout", "0.5", "undeploy", "--force", "//web:frontend", "1.0.0")
        assert removed.returncode == 0, removed.stderr
        assert not image.exists()
    finally:
        go.set()
        out, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 0, err
    assert "was removed or replaced meanwhile by another command; checking again" in err
    assert os.readlink(ops / "pods/web/frontend/current") == "2.0.0"
    assert onboard(ops, "verify").returncode == 0
