"""SIGKILL of `ops-onboard deploy` at chosen moments: afterwards one version is current, and
after `ops-onboard start` (or a second deploy) exactly that version runs and answers.

The invariant of deploy/run.py: a crash never leaves `current` naming no version, nor two
pods of the label; whatever ran when it was killed, the next command puts `current` back
in service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from podrelease.core.names import Label
from podrelease.deploy.runtime.kube import pod_key, pod_name
from podrelease.deploy.runtime.podman import Podman

from podmanhelpers import podman_env  # noqa: F401 (fixtures)
from releasehelpers import LABEL, OPS_ONBOARD, STOP, bundle, get, ok, onboard, ops, page, port, released, status  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # SIGKILLs deploys of real podman pods at several moments

LABEL_ = Label.parse(LABEL)


def staging_exists(ops_dir, podman):
    return any(name.startswith(".tmp-deploy-") for name in os.listdir(ops_dir))


def old_pod_gone(ops_dir, podman):
    return not podman.pod_exists(pod_name(LABEL_, "1.0.0"))


def new_pod_exists(ops_dir, podman):
    return podman.pod_exists(pod_name(LABEL_, "2.0.0"))


MOMENTS = {"installing": staging_exists, "old-pod-stopped": old_pod_gone, "new-pod-started": new_pod_exists}


def pods_of_label(podman: Podman) -> list[str]:
    return [p["Name"] for p in podman.pods("podrelease/pod", pod_key(LABEL_))]


@pytest.mark.parametrize("recover", ["start", "deploy"])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_during_deploy_leaves_one_version_current_and_recoverable(released, ops, port, moment, recover):  # noqa: F811 (fixtures imported by name)
    podman = Podman()
    ok(onboard(ops, "deploy", bundle(released, "1.0.0")))
    env = {k: v for k, v in os.environ.items() if k != "OPS_ONBOARD_NO_START"}
    proc = subprocess.Popen([OPS_ONBOARD, "--root", str(ops), "--stop-timeout", STOP, "deploy", bundle(released, "2.0.0")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reached = MOMENTS[moment]
    deadline = time.monotonic() + 30
    while not reached(ops, podman) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a podman it started dies with it (PR_SET_PDEATHSIG)

    current = os.readlink(ops / "pods/web/frontend/current")
    assert current in ("1.0.0", "2.0.0")
    assert len(pods_of_label(podman)) <= 1, "two pods of one label"
    if current == "2.0.0":  # switched only once healthy
        assert get(port) == page("2.0.0")

    if recover == "start":
        ok(onboard(ops, "start", LABEL))
        want = current
    else:
        ok(onboard(ops, "deploy", bundle(released, "2.0.0")))
        want = "2.0.0"
    st = status(ops)
    assert (st["current"], st["running"], st["healthy"], st["version"]) == (want, True, True, want)
    assert get(port) == page(want)
    assert pods_of_label(podman) == [pod_name(LABEL_, want)]
    assert not [n for n in os.listdir(ops) if n.startswith(".tmp-")]


def test_a_container_a_killed_play_left_outside_any_pod_does_not_block_the_next_deploy(released, ops, port, tmp_path):  # noqa: F811
    podman = Podman()
    ok(onboard(ops, "deploy", bundle(released, "1.0.0")))
    # what a `kube play` killed half-way can leave: a container holding a name the next play needs, in no labelled pod
    stray = f"{pod_name(LABEL_, '2.0.0')}-httpd"
    podman.run("create", "--name", stray, "--rootfs", str(tmp_path), "/bin/true")
    ok(onboard(ops, "deploy", bundle(released, "2.0.0")))
    assert os.readlink(ops / "pods/web/frontend/current") == "2.0.0"
    assert get(port) == page("2.0.0")
