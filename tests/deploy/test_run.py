"""ops-onboard runs what it deploys: real doit releases, real bundles, real podman; no mocks."""

from __future__ import annotations

import threading
import time

import kubernetes_validate
import pytest
import yaml

from podmanhelpers import podman_env  # noqa: F401 (fixtures)
from releasehelpers import BAD, LABEL, bundle, get, ok, onboard, ops, page, port, released, status  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # real podman end to end: releases, deploys, upgrades and rolls back pods


def wait_for(on: int, want: bytes | None, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while get(on, timeout=0.5) != want:
        assert time.monotonic() < deadline, f"port {on} does not answer {want!r}"
        time.sleep(0.05)


class Poller(threading.Thread):
    """GETs the page in a loop; the longest time nothing (good) answered."""

    def __init__(self, on: int):
        super().__init__(daemon=True)
        self.port, self.running, self.longest, self.answers = on, True, 0.0, []

    def run(self) -> None:
        last_ok = time.monotonic()
        while self.running:
            got = get(self.port, timeout=0.5)
            now = time.monotonic()
            if got is not None:
                self.longest = max(self.longest, now - last_ok)
                last_ok = now
                if not self.answers or self.answers[-1] != got:
                    self.answers.append(got)
            time.sleep(0.01)


def test_deploy_upgrade_failed_upgrade_rollback_stop(released, ops, port):  # noqa: F811 (fixtures imported by name)
    started = time.monotonic()
    ok(onboard(ops, "deploy", bundle(released, "1.0.0")))
    cold = time.monotonic() - started
    assert get(port) == page("1.0.0")
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == ("1.0.0", True, True, "1.0.0")
    assert (ops / "data/web/frontend/state/seed").read_bytes() == b"seed\n"  # the writable copy

    poller = Poller(port)
    poller.start()
    started = time.monotonic()
    result = onboard(ops, "deploy", bundle(released, "2.0.0"))
    ok(result)
    wait_for(port, page("2.0.0"))
    warm = time.monotonic() - started
    time.sleep(0.2)
    poller.running = False
    poller.join()
    assert poller.answers == [page("1.0.0"), page("2.0.0")]  # never a third thing, never an error page
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == ("2.0.0", True, True, "2.0.0")
    again = ok(onboard(ops, "deploy", bundle(released, "2.0.0")))
    assert "already running healthy" in again.stdout  # not restarted
    assert status(ops)["pod"] == st["pod"]
    print(f"\ndeploy -> first GET of the new version: cold {cold:.2f}s, warm {warm:.2f}s; "
          f"longest gap with no answer during the upgrade: {poller.longest:.2f}s")

    failed = onboard(ops, "deploy", bundle(released, BAD))
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("ops-onboard: container web-frontend-3-0-0-"), failed.stderr
    assert "-httpd" in lines[0] and "exited with status" in lines[0] and "2.0.0 is current and running again" in lines[0]
    assert len(lines) > 1 and all(line.startswith("  web-frontend-3-0-0-") for line in lines[1:])
    assert "Traceback" not in failed.stderr
    assert get(port) == page("2.0.0")
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == ("2.0.0", True, True, "2.0.0")

    ok(onboard(ops, "rollback", LABEL))
    assert get(port) == page("1.0.0")
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == ("1.0.0", True, True, "1.0.0")

    refused = onboard(ops, "undeploy", LABEL, "1.0.0")
    assert refused.returncode == 1 and "is running" in refused.stderr

    ok(onboard(ops, "stop", LABEL))
    assert get(port, timeout=1) is None
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["state"]) == ("1.0.0", False, False, "absent")

    ok(onboard(ops, "start", LABEL))
    assert get(port) == page("1.0.0")
    ok(onboard(ops, "undeploy", LABEL, "1.0.0", "--force"))
    assert get(port, timeout=1) is None


def test_render_is_a_valid_kubernetes_pod(released, ops):  # noqa: F811 (fixtures imported by name)
    ok(onboard(ops, "deploy", "--no-start", bundle(released, "1.0.0")))
    doc = yaml.safe_load(ok(onboard(ops, "render", LABEL)).stdout)
    kubernetes_validate.validate(doc, "1.30.0", strict=True)
    mounts = {m["mountPath"]: m["readOnly"] for m in doc["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"/srv/www": True, "/var/state": False}
    paths = {v["name"]: v["hostPath"]["path"] for v in doc["spec"]["volumes"]}
    assert paths["state"] == str(ops / "data/web/frontend/state")
    assert paths["www"] == str(ops / "pods/web/frontend/1.0.0/volumes/www")
    assert yaml.safe_load(ok(onboard(ops, "render", LABEL, "1.0.0")).stdout) == doc


def test_a_rollback_to_a_version_that_fails_goes_back(released, ops, port):  # noqa: F811
    ok(onboard(ops, "deploy", "--no-start", bundle(released, BAD)))  # current, never run
    ok(onboard(ops, "deploy", bundle(released, "1.0.0")))
    assert get(port) == page("1.0.0")
    failed = onboard(ops, "rollback", LABEL)
    assert failed.returncode == 1
    first = failed.stderr.splitlines()[0]
    assert first.startswith("ops-onboard: container web-frontend-3-0-0-") and "1.0.0 is current and running again" in first
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == ("1.0.0", True, True, "1.0.0")
    assert get(port) == page("1.0.0")
