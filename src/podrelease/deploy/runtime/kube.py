"""A pod.json as a Kubernetes v1 Pod, for `podman kube play`: a pure function of its inputs.

`render(pod, volume_dirs)` gives the Pod as a dict and `to_yaml` its YAML.
The same pod.json and volume directories always render the same bytes, so
the YAML need not be kept anywhere: it is rendered again whenever needed.

Invariants of the rendered Pod (it passes kubernetes-validate for 1.30):

- `metadata.name` is `pod_name(label, version)`: a DNS-1123 label (<= 63
  characters) made of the label and version, always ending in a hash of
  both, because the readable part alone is not unique
  (`//web:frontend` 1.2.0 and `//web/frontend:1` 2.0 both read `web-frontend-1-2-0`);
- `metadata.labels` are for finding pods: `podrelease/pod` is a hash of the
  label alone (what `stop`/`status` filter on, the same for every version),
  `podrelease/label`, `/channel` and `/version` are readable but may be cut or
  hashed to fit label values; `metadata.annotations` hold the exact strings
  (podman copies them onto every container);
- `spec.hostNetwork` is true (apps listen on the host's addresses, the
  health check probes 127.0.0.1) and `restartPolicy` is `Never`: a container
  that exits stays exited, so `health` sees a crash at start instead of a
  container that flaps between restarts; keeping a pod running for
  the long term is the job of whoever supervises the host (systemd);
- one container per app, named after the app, running the app's image by
  its podman name (`podman.image_name`) with `imagePullPolicy: Never`
  (nothing is ever fetched from a registry), `command` = the app's `exec`
  (the image's entrypoint and cmd are replaced exactly), its environment
  (plus appc's `PATH` and `AC_APP_NAME` unless it sets them), working
  directory and numeric user and group;
- each host volume is a `hostPath` of type `Directory` at the directory
  given for it (absolute), mounted read-only when the pod manifest says so.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from ...core.errors import ContractError
from ...core.names import Label
from ...core.podjson import PodJson
from .podman import image_name

MAX_DNS_LABEL = 63
MAX_LABEL_VALUE = 63
HASH_CHARS = 8
KEY_POD = "podrelease/pod"  # label: hash of the pod's label, what runner filters on
KEY_LABEL = "podrelease/label"
KEY_CHANNEL = "podrelease/channel"
KEY_VERSION = "podrelease/version"
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?\Z")
NOT_DNS = re.compile(r"[^a-z0-9]+")
NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
NUMERIC_ID = re.compile(r"(0|[1-9][0-9]{0,9})\Z")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # appc's default
MAX_ID = 2**32 - 2  # uid/gid 4294967295 is (uid_t)-1: "no change" to the kernel


def _hash(text: str, chars: int = HASH_CHARS) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def dns_label(text: str, always_hash: bool = False) -> str:
    """`text` as a DNS-1123 label; changed, cut or `always_hash` ones end in `-<hash of text>`."""
    readable = NOT_DNS.sub("-", text.lower()).strip("-")
    if not always_hash and readable == text and 0 < len(readable) <= MAX_DNS_LABEL:
        return readable
    prefix = readable[:MAX_DNS_LABEL - HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{_hash(text)}" if prefix else _hash(text)


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value; changed or cut ones end in `-<hash of text>`."""
    if len(text) <= MAX_LABEL_VALUE and LABEL_VALUE.match(text):
        return text
    readable = NOT_LABEL_VALUE.sub("_", text)[:MAX_LABEL_VALUE - HASH_CHARS - 1]
    readable = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", readable)
    return f"{readable}-{_hash(text)}" if readable else _hash(text)


def pod_name(label: Label, version: str) -> str:
    """The podman pod's name: `<label path>-<name>-<version>-<hash>`, a DNS-1123 label."""
    return dns_label(f"{label.join()}-{version}", always_hash=True)


def pod_key(label: Label) -> str:
    """The value of the `podrelease/pod` label: the same for every version of the pod."""
    return _hash(str(label), 32)


def container_name(app: str) -> str:
    """An app's container name inside its pod (podman prefixes it with `<pod name>-`)."""
    return dns_label(app)


def _readable_label(label: Label) -> str:
    return label_value(label.join().replace("/", "."))


def _numeric_id(value: object, what: str) -> int:
    """A uid or gid: appc allows names, Kubernetes (and so podman kube) only numbers."""
    if value == "root":
        return 0
    if isinstance(value, str) and NUMERIC_ID.match(value) and int(value) <= MAX_ID:
        return int(value)
    raise ContractError(f"{what} {value!r} is not a numeric id; a pod run by podman needs one")


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ContractError(f"{what} must be a non-empty list of strings")
    return value


def _environment(value: object, app: str, what: str) -> list[dict]:
    """The app's environment, with what appc promises every app unless it sets them itself:
    `PATH` (an image converted from an ACI has no `Env`, and neither `podman exec`
    nor a relative `exec` would find a program) and `AC_APP_NAME`."""
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ContractError(f"{what}: environment must be a list")
    env = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ContractError(f"{what}: environment entries need a name")
        if not isinstance(item.get("value", ""), str):
            raise ContractError(f"{what}: environment {item['name']!r} has a value that is not a string")
        env.append({"name": item["name"], "value": item.get("value", "")})
    names = {e["name"] for e in env}
    defaults = [{"name": k, "value": v} for k, v in (("PATH", DEFAULT_PATH), ("AC_APP_NAME", app)) if k not in names]
    return env + defaults


def render(pod: PodJson, volume_dirs: Mapping[str, str]) -> dict:
    """The Pod for `pod`; `volume_dirs` maps each host volume's name to its absolute directory."""
    where = f"pod {pod.label} {pod.version}"
    manifest = pod.manifest
    images = {image.id: image for image in pod.images}

    volumes: list[dict] = []
    kinds: dict[str, dict] = {}
    for vol in manifest.get("volumes") or []:
        name = vol["name"]
        kind = vol.get("kind")
        if kind == "host":
            source = volume_dirs.get(name)
            if source is None or not PurePosixPath(source).is_absolute():
                raise ContractError(f"{where}: volume {name!r} has no absolute directory to mount")
            volumes.append({"name": dns_label(name), "hostPath": {"path": str(source), "type": "Directory"}})
        elif kind == "empty":
            volumes.append({"name": dns_label(name), "emptyDir": {}})
        else:
            raise ContractError(f"{where}: volume {name!r} is of kind {kind!r}; only 'host' and 'empty' run")
        kinds[name] = vol

    containers: list[dict] = []
    seen: set[str] = set()
    for i, entry in enumerate(manifest.get("apps") or []):
        name = entry.get("name")
        what = f"{where}: app {name!r}"
        if not isinstance(name, str) or not name:
            raise ContractError(f"{where}: manifest.apps[{i}] has no name")
        cname = container_name(name)
        if cname in seen:
            raise ContractError(f"{what}: two apps would share the container name {cname!r}")
        seen.add(cname)
        app = entry.get("app")
        if not isinstance(app, dict):
            raise ContractError(f"{what} has no 'app' (exec, user, group)")
        container: dict = {
            "name": cname,
            "image": image_name(images[entry["image"]["id"]]),
            "imagePullPolicy": "Never",
            "command": _strings(app.get("exec"), f"{what}: exec"),
        }
        container["env"] = _environment(app.get("environment"), name, what)
        if app.get("workingDirectory"):
            container["workingDir"] = app["workingDirectory"]
        container["securityContext"] = {
            "runAsUser": _numeric_id(app.get("user"), f"{what}: user"),
            "runAsGroup": _numeric_id(app.get("group"), f"{what}: group"),
        }
        mounts = []
        for mount in entry.get("mounts") or []:
            vol = kinds.get(mount.get("volume"))
            if vol is None:
                raise ContractError(f"{what} mounts volume {mount.get('volume')!r}, which the pod does not have")
            path = mount.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ContractError(f"{what}: mount path {path!r} is not absolute")
            mounts.append({"name": dns_label(vol["name"]), "mountPath": path,
                           "readOnly": bool(vol.get("readOnly", False))})
        if mounts:
            container["volumeMounts"] = mounts
        containers.append(container)
    if not containers:
        raise ContractError(f"{where}: the pod has no apps to run")

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(pod.label, pod.version),
            "labels": {
                KEY_POD: pod_key(pod.label),
                KEY_LABEL: _readable_label(pod.label),
                KEY_CHANNEL: label_value(pod.channel),
                KEY_VERSION: label_value(pod.version),
            },
            "annotations": {
                KEY_LABEL: str(pod.label),
                KEY_CHANNEL: pod.channel,
                KEY_VERSION: pod.version,
            },
        },
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": containers,
            "volumes": volumes,
        },
    }


def to_yaml(doc: dict) -> str:
    """The Pod as YAML, keys in the order built (stable across runs)."""
    import yaml  # here: every ops-onboard command would pay its import, most need no YAML

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
