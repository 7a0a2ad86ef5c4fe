"""Where each artifact lives in a registry: repositories and tags.

| artifact      | reference                                                     |
| ------------- | ------------------------------------------------------------- |
| image         | `<registry>/<prefix>/images/<label_path>/<image>:<version>`   |
| ACI companion | the same repository, tag `sha256-<image manifest hex>.aci`    |
| pod version   | `<registry>/<prefix>/channels/<channel>/<label_path>/<pod>:<version>` |
| tip           | the tag `tip` of that pod repository                          |
| pod signature | the same repository, tag `_sig.<version>`                     |
| volume        | `<registry>/<prefix>/volumes/<label_path>/<volume>:<version>` |

A version becomes a tag as it is, except `+` (which tags may not hold)
becomes `_` (which versions may not hold), so the mapping is one to one.
A version starts with a letter or a digit, so a tag starting with `_` is
never a version's: `_sig.<version tag>` holds the signature of a pod
version signed after it was pushed (its tag never changes, so the
signature cannot join it).
The companion's tag follows cosign's `sha256-<hex>.sig` convention: it is
named by the content it belongs to, so it never moves.

Everything here is pure: strings in, strings out, ValueError for a name
a registry cannot hold.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# The distribution spec's grammar for repository path components and tags.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?\Z")
MAX_REPOSITORY = 255
TIP_TAG = "tip"
COMPANION_SUFFIX = ".aci"
SIGNATURE_PREFIX = "_sig."
OCI_SCHEME = "oci://"


@dataclass(frozen=True)
class Registry:
    """`<host>[:<port>]/<prefix>`: the registry and the path under which a release root lives."""

    host: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.host}/{self.prefix}"

    def repository(self, *parts: str) -> str:
        """`<host>/<prefix>/<parts...>`; ValueError if a registry cannot hold that name."""
        path = "/".join((self.prefix, *parts))
        for component in path.split("/"):
            if not COMPONENT.match(component):
                raise ValueError(f"{component!r} cannot be part of a registry repository name "
                                 "(lowercase letters and digits, separated by '.', '_', '__' or '-')")
        if len(path) > MAX_REPOSITORY:
            raise ValueError(f"repository name {path[:40]!r}... is longer than {MAX_REPOSITORY} characters")
        return f"{self.host}/{path}"

    def image(self, label_path: str, image: str) -> str:
        return self.repository("images", *_parts(label_path), image)

    def volume(self, label_path: str, volume: str) -> str:
        return self.repository("volumes", *_parts(label_path), volume)

    def pod(self, channel: str, label_path: str, pod: str) -> str:
        return self.repository("channels", channel, *_parts(label_path), pod)


def _parts(label_path: str) -> list[str]:
    return [part for part in label_path.split("/") if part]


def parse_registry(text: object) -> Registry:
    """`<host>[:<port>]/<prefix>` as PODRELEASE_REGISTRY or `registry:` give it."""
    if not isinstance(text, str) or "/" not in text.strip("/"):
        raise ValueError(f"registry {text!r} is not <host>[:<port>]/<prefix>")
    host, _, prefix = text.strip().strip("/").partition("/")
    if "://" in text:
        raise ValueError(f"registry {text!r} takes no scheme: give <host>[:<port>]/<prefix> "
                         "(plain HTTP is for registries marked insecure in registries.conf)")
    if not HOST.match(host):
        raise ValueError(f"registry host {host!r} is not a host name or address with an optional port")
    registry = Registry(host, prefix)
    registry.repository()  # checks the prefix
    return registry


def tag_of(version: str) -> str:
    """A version's tag; ValueError if it is too long for one (tags hold 128 characters)."""
    tag = version.replace("+", "_")
    if not TAG.match(tag) or tag == TIP_TAG:
        raise ValueError(f"version {version[:40]!r} cannot be a registry tag (at most 128 characters)")
    return tag


def version_of(tag: str) -> str | None:
    """The version a tag names, or None for a tag that names no version (tip, companions, signatures)."""
    if tag == TIP_TAG or tag.endswith(COMPANION_SUFFIX) or tag.startswith("_"):
        return None
    return tag.replace("_", "+")


def signature_tag(version: str) -> str:
    """The tag of a pod version's signature artifact: `_sig.<version tag>`, or for a version too
    long for that, `_sig.` and the start of its tag and a hash of all of it."""
    tag = SIGNATURE_PREFIX + tag_of(version)
    if TAG.match(tag):
        return tag
    return f"{tag[:80]}-{hashlib.sha256(tag.encode()).hexdigest()[:40]}"


def companion_tag(manifest_digest: str) -> str:
    """The tag of the artifact that restores an image's ACI, named by the image manifest."""
    return manifest_digest.replace(":", "-") + COMPANION_SUFFIX


@dataclass(frozen=True)
class PodReference:
    """`oci://<host>/<prefix>/channels/<channel>/<label_path>/<pod>:<version|tip>`, as ops-onboard takes it."""

    registry: Registry
    repository: str  # the full pod repository, host included
    tag: str


def parse_pod_reference(url: str) -> PodReference:
    """Split an `oci://` pod reference; the prefix is what comes before `/channels/`."""
    rest = url.removeprefix(OCI_SCHEME)
    repository, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag or not TAG.match(tag):
        raise ValueError(f"{url}: expected oci://<registry>/<prefix>/channels/<channel>/<label_path>/<pod>:<version|tip>")
    head, marker, tail = repository.partition("/channels/")
    if not marker or len(tail.split("/")) < 2:
        raise ValueError(f"{url}: the repository has no /channels/<channel>/<label_path>/<pod> part")
    registry = parse_registry(head)
    return PodReference(registry, registry.repository("channels", *tail.split("/")), tag)
