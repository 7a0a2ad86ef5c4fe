"""End to end with real podman: load, play, probe, stop; failures named, one line each."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from podrelease.core.errors import ContractError
from podrelease.core.names import Label
from podrelease.deploy.runtime import runner
from podrelease.deploy.runtime.health import ExecCheck, HealthError, HttpCheck, TcpCheck
from podrelease.deploy.runtime.kube import pod_name
from podrelease.deploy.runtime.podman import Podman, PodmanError, image_name

from podmanhelpers import busybox_layout, free_port, install, pod_document, podman_env  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # starts, probes and stops real podman pods

LABEL = Label.parse("//web:frontend")
PAGE = b"<h1>hello from a volume</h1>\n"
STOP = 1  # seconds: busybox httpd as PID 1 ignores SIGTERM, so every stop waits for the SIGKILL


def httpd(port: int, name: str = "frontend") -> dict:
    return {"name": name, "exec": ["/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
            "mounts": [{"volume": "static", "path": "/www"}]}


def get(port: int, path: str = "/index.html", timeout: float = 2) -> bytes:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read()


@pytest.fixture
def podman(podman_env):
    yield Podman()
    runner.stop(LABEL, timeout=0, podman=Podman())


@pytest.fixture
def installed(tmp_path, busybox_layout):
    def make(apps, version="1.2.0", **kw):
        return install(tmp_path, busybox_layout, pod_document(apps, version=version, **kw),
                       {"static": {"index.html": PAGE}})
    return make


def test_load_is_idempotent(podman, installed):
    pod = installed([httpd(free_port())]).pod
    name = image_name(pod.images[0])
    runner.load_images(pod, installed([httpd(1)], version="9").version_dir, podman)
    assert podman.image_exists(name)
    started = time.monotonic()
    assert podman.load_oci(installed([httpd(1)], version="10").version_dir / "images/busybox/oci",
                           "1.36.1", name) is False
    assert time.monotonic() - started < 2
    assert not podman.image_exists("localhost/layout:latest")


def test_serves_a_volume_until_stopped(podman, installed):
    port = free_port()
    pod = installed([httpd(port)])
    started = time.monotonic()
    status = runner.start(pod.pod, pod.version_dir, health=HttpCheck(port, "/index.html", 20), stop_timeout=STOP,
                          podman=podman)
    healthy_after = time.monotonic() - started
    assert get(port) == PAGE
    print(f"\nstart -> healthy (image loaded, kube play, first GET): {healthy_after:.2f}s")
    assert status.state == "running" and status.healthy is True
    assert status.pod == pod_name(LABEL, "1.2.0") and status.version == "1.2.0"
    assert [(c.app, c.state) for c in status.containers] == [("frontend", "running")]

    later = runner.status(LABEL, health=TcpCheck(port, 5), podman=podman)
    assert later.state == "running" and later.healthy is True
    assert runner.status(LABEL, health=ExecCheck("frontend", ("test", "-f", "/www/index.html"), 5),
                         podman=podman).healthy is True
    missing = runner.status(LABEL, health=HttpCheck(port, "/nope.html", 5), podman=podman)
    assert missing.healthy is False and "HTTP 404" in missing.reason

    started = time.monotonic()
    assert runner.stop(LABEL, timeout=STOP, podman=podman) == [status.pod]
    print(f"stop: {time.monotonic() - started:.2f}s")
    with pytest.raises(urllib.error.URLError):
        get(port, timeout=1)
    assert runner.status(LABEL, podman=podman).state == "absent"
    assert runner.stop(LABEL, podman=podman) == []


def test_kube_play_to_first_answer(podman, installed):
    """How long podman takes from `kube play` to a first answer, the image already stored."""
    port = free_port()
    pod = installed([httpd(port)])
    runner.load_images(pod.pod, pod.version_dir, podman)
    from podrelease.deploy.runtime.kube import render, to_yaml
    yaml_text = to_yaml(render(pod.pod, runner.volume_dirs(pod.pod, pod.version_dir)))
    started = time.monotonic()
    podman.kube_play(yaml_text)
    played = time.monotonic() - started
    while True:
        try:
            assert get(port, timeout=0.5) == PAGE
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() - started < 20
            time.sleep(0.02)
    print(f"\nkube play: {played:.2f}s, kube play -> first GET: {time.monotonic() - started:.2f}s")


def test_a_new_version_replaces_the_running_one(podman, installed):
    port = free_port()
    first = installed([httpd(port)], version="1.2.0")
    runner.start(first.pod, first.version_dir, health=HttpCheck(port, "/", 20), stop_timeout=STOP, podman=podman)
    second = installed([httpd(port)], version="1.3.0")
    status = runner.start(second.pod, second.version_dir, health=HttpCheck(port, "/", 20), stop_timeout=STOP,
                          podman=podman)
    assert status.version == "1.3.0" and get(port) == PAGE
    assert [p["Name"] for p in podman.pods("podrelease/pod", runner.pod_key(LABEL))] == [status.pod]
    assert not podman.pod_exists(pod_name(LABEL, "1.2.0"))


def test_an_app_that_exits_at_start_is_named_with_its_log(podman, installed):
    port = free_port()
    crash = {"name": "migrate", "exec": ["/bin/sh", "-c", "echo starting; echo 'config /etc/x missing' >&2; exit 3"]}
    pod = installed([httpd(port), crash])
    with pytest.raises(HealthError) as info:
        runner.start(pod.pod, pod.version_dir, health=None, settle=5, stop_timeout=STOP, podman=podman)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("pod //web:frontend 1.2.0: app 'migrate' exited with status 3;")
    assert "starting | config /etc/x missing" in message
    assert info.value.app == "migrate"
    status = runner.status(LABEL, podman=podman)  # kept, stopped, for `podman logs`
    assert status.state == "exited" and status.healthy is False


def test_a_command_that_does_not_exist_is_named(podman, installed):
    pod = installed([{"name": "frontend", "exec": ["/bin/no-such-server"]}])
    with pytest.raises(ContractError) as info:
        runner.start(pod.pod, pod.version_dir, health=None, settle=1, stop_timeout=STOP, podman=podman)
    message = str(info.value)
    assert "\n" not in message and "app 'frontend'" in message and "/bin/no-such-server" in message


def test_a_check_that_never_passes_times_out_in_one_line(podman, installed):
    port = free_port()
    pod = installed([httpd(port)])
    started = time.monotonic()
    with pytest.raises(HealthError) as info:
        runner.start(pod.pod, pod.version_dir, health=HttpCheck(port, "/healthz", 2), stop_timeout=STOP,
                     podman=podman)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "\n" not in message
    assert (f"pod //web:frontend 1.2.0: health check GET http://127.0.0.1:{port}/healthz did not pass within 2s "
            "(last: HTTP 404); 'frontend' log") in message
    with pytest.raises(urllib.error.URLError):
        get(port, timeout=1)  # stopped


def test_without_a_check_running_for_the_settle_time_is_healthy(podman, installed):
    pod = installed([{"name": "worker", "exec": ["/bin/sleep", "600"]}])
    started = time.monotonic()
    status = runner.start(pod.pod, pod.version_dir, health=None, settle=1, stop_timeout=STOP, podman=podman)
    assert time.monotonic() - started >= 1
    assert status.state == "running" and status.healthy is True


def test_exec_and_tcp_checks(podman, installed):
    port = free_port()
    pod = installed([httpd(port)])
    runner.start(pod.pod, pod.version_dir, health=TcpCheck(port, 20), stop_timeout=STOP, podman=podman)
    runner.start(pod.pod, pod.version_dir, health=ExecCheck("frontend", ("test", "-f", "/www/index.html"), 20),
                 stop_timeout=STOP, podman=podman)
    with pytest.raises(HealthError, match=r"health check 'test -f /www/nope' in app 'frontend' did not pass "
                                          r"within 1s \(last: exit 1"):
        runner.start(pod.pod, pod.version_dir, health=ExecCheck("frontend", ("test", "-f", "/www/nope"), 1),
                     stop_timeout=STOP, podman=podman)


def test_podman_failures_are_one_line(podman_env, monkeypatch):
    monkeypatch.setenv("PODRELEASE_PODMAN", "/nonexistent/podman --root /x")
    with pytest.raises(PodmanError, match=r"^/nonexistent/podman: command not found \(set PODRELEASE_PODMAN"):
        runner.status(LABEL)
    monkeypatch.setenv("PODRELEASE_PODMAN", " ".join(podman_env))
    with pytest.raises(PodmanError) as info:
        Podman().run("pod", "inspect", "no-such-pod")
    assert str(info.value).startswith("podman pod inspect: exit 125: ") and "\n" not in str(info.value)
