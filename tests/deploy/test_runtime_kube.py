"""kube.render: a valid Kubernetes 1.30 Pod, deterministic names, exact apps; health parsing."""

from __future__ import annotations

import json
import re

import pytest

from podrelease.core import health
from podrelease.core.errors import ContractError, PodJsonError
from podrelease.core.names import Label
from podrelease.core.podjson import parse_document
from podrelease.deploy.runtime import kube
from podrelease.deploy.runtime.podman import image_name, last_line

from podmanhelpers import IMAGE_ID, pod_document

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")

HTTPD = {"name": "frontend", "exec": ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
         "environment": [{"name": "MODE", "value": "prod"}], "workingDirectory": "/www", "user": "1000",
         "group": "1000", "mounts": [{"volume": "static", "path": "/www"}]}


def parsed(doc: dict):
    return parse_document(doc, json.dumps(doc).encode())


def rendered(doc: dict) -> dict:
    names = [v["name"] for v in doc["manifest"]["volumes"]]
    return kube.render(parsed(doc), {n: f"/var/lib/ops/pods/web/frontend/1.2.0/volumes/{n}" for n in names})


def validate(doc: dict) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_pod_passes_kubernetes_validate_and_says_what_it_runs():
    doc = rendered(pod_document([HTTPD, {"name": "sidecar", "exec": ["/bin/sleep", "1000"]}]))
    validate(doc)
    assert doc["spec"]["hostNetwork"] is True and doc["spec"]["restartPolicy"] == "Never"
    frontend, sidecar = doc["spec"]["containers"]
    assert frontend == {
        "name": "frontend",
        "image": f"localhost/podrelease/busybox:{IMAGE_ID[7:23]}",
        "imagePullPolicy": "Never",
        "command": HTTPD["exec"],
        "env": [{"name": "MODE", "value": "prod"}, {"name": "PATH", "value": kube.DEFAULT_PATH},
                {"name": "AC_APP_NAME", "value": "frontend"}],
        "workingDir": "/www",
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "volumeMounts": [{"name": "static", "mountPath": "/www", "readOnly": True}],
    }
    assert sidecar["command"] == ["/bin/sleep", "1000"] and "volumeMounts" not in sidecar
    assert [e["name"] for e in sidecar["env"]] == ["PATH", "AC_APP_NAME"]
    own_path = rendered(pod_document([dict(HTTPD, environment=[{"name": "PATH", "value": "/opt/bin"}])]))
    assert own_path["spec"]["containers"][0]["env"] == [{"name": "PATH", "value": "/opt/bin"},
                                                          {"name": "AC_APP_NAME", "value": "frontend"}]
    assert doc["spec"]["volumes"] == [{"name": "static", "hostPath": {
        "path": "/var/lib/ops/pods/web/frontend/1.2.0/volumes/static", "type": "Directory"}}]
    meta = doc["metadata"]
    assert re.fullmatch(r"web-frontend-1-2-0-[0-9a-f]{8}", meta["name"])
    assert meta["labels"]["podrelease/label"] == "web.frontend"
    assert meta["labels"]["podrelease/version"] == "1.2.0"
    assert meta["annotations"] == {"podrelease/label": "//web:frontend", "podrelease/channel": "prod",
                                   "podrelease/version": "1.2.0"}
    assert kube.to_yaml(doc) == kube.to_yaml(rendered(pod_document([HTTPD, {"name": "sidecar",
                                                                              "exec": ["/bin/sleep", "1000"]}])))


def test_long_and_odd_names_fit_kubernetes_limits():
    label = "//" + "/".join(["very-long.segment_" + str(i) for i in range(12)]) + ":" + "a" * 70
    version = "2.0.0+build." + "9" * 80 + "-"
    app = {"name": "b" * 100, "exec": ["/bin/true"], "mounts": [{"volume": "v" * 80, "path": "/data"}]}
    doc = rendered(pod_document([app], label=label, version=version, volumes={"v" * 80: False},
                                channel="x" * 70 + "."))
    validate(doc)
    meta = doc["metadata"]
    assert DNS_LABEL.match(meta["name"])
    assert all(LABEL_VALUE.match(v) for v in meta["labels"].values()), meta["labels"]
    assert meta["annotations"]["podrelease/version"] == version
    container = doc["spec"]["containers"][0]
    assert DNS_LABEL.match(container["name"]) and DNS_LABEL.match(doc["spec"]["volumes"][0]["name"])
    assert container["volumeMounts"][0]["name"] == doc["spec"]["volumes"][0]["name"]
    assert container["volumeMounts"][0]["readOnly"] is False


def test_pod_names_tell_apart_what_reads_the_same():
    a = kube.pod_name(Label.parse("//web:frontend"), "1.2.0")
    b = kube.pod_name(Label.parse("//web/frontend:1"), "2.0")
    assert a != b and a.startswith("web-frontend-1-2-0-") and b.startswith("web-frontend-1-2-0-")
    assert kube.pod_key(Label.parse("//web:frontend")) != kube.pod_key(Label.parse("//web/frontend:x"))


def test_user_by_name_is_refused_root_is_zero():
    doc = rendered(pod_document([dict(HTTPD, user="root", group="root")]))
    assert doc["spec"]["containers"][0]["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}
    with pytest.raises(ContractError, match=r"app 'frontend': user 'nobody' is not a numeric id"):
        rendered(pod_document([dict(HTTPD, user="nobody")]))


def test_image_names_are_per_id():
    pod = parsed(pod_document([HTTPD]))
    assert image_name(pod.images[0]) == f"localhost/podrelease/busybox:{IMAGE_ID[7:23]}"


@pytest.mark.parametrize("value, expected", [
    (None, None),
    ({"http": {"port": 8080, "path": "/healthz"}, "timeout": 30}, health.HttpCheck(8080, "/healthz", 30.0)),
    ({"tcp": {"port": 5432}, "timeout": 2.5}, health.TcpCheck(5432, 2.5)),
    ({"exec": {"app": "db", "command": ["pg_isready"]}, "timeout": 10},
     health.ExecCheck("db", ("pg_isready",), 10.0)),
])
def test_health_shapes_round_trip(value, expected):
    assert health.parse_health(value) == expected
    assert health.health_json(expected) == value


@pytest.mark.parametrize("value, message", [
    ({"http": {"port": 8080, "path": "/"}}, "missing key 'timeout'"),
    ({"http": {"port": 0, "path": "/"}, "timeout": 1}, "not a port number"),
    ({"http": {"port": 80, "path": "/a b"}, "timeout": 1}, "must start with '/'"),
    ({"tcp": {"port": 80}, "http": {"port": 80, "path": "/"}, "timeout": 1}, "exactly one of"),
    ({"tcp": {"port": True}, "timeout": 1}, "not a port number"),
    ({"exec": ["true"], "timeout": 1}, "health.exec must be an object"),
    ({"exec": {"app": "x", "command": []}, "timeout": 1}, "non-empty list"),
    ({"tcp": {"port": 80}, "timeout": 0}, "health.timeout"),
])
def test_bad_health_is_one_line(value, message):
    with pytest.raises(PodJsonError, match=re.escape(message)) as info:
        health.parse_health(value)
    assert "\n" not in str(info.value)


def test_podman_last_line_picks_the_reason():
    stderr = ('time="x" level=warning msg="foo"\n'
              "starting container 1: runc create failed: exec: \"/bin/nope\": no such file\n"
              "Error: failed to start 1 containers\n")
    assert last_line(stderr) == ('starting container 1: runc create failed: exec: "/bin/nope": no such file '
                                 "(failed to start 1 containers)")
    assert last_line("Error: no such pod x\n") == "no such pod x"
