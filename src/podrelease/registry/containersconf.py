"""What podman users configured for a registry host: credentials and registries.conf.

The same files skopeo and podman read, in their order (containers-auth.json(5),
containers-registries.conf(5)):

- credentials: `REGISTRY_AUTH_FILE` alone if it is set; otherwise
  `$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`,
  `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`) and `~/.dockercfg`.
  The first file with an entry for the repository (its most specific
  namespace first, then the host) wins.
- registries.conf: `CONTAINERS_REGISTRIES_CONF`, or the user's file, or
  `/etc/containers/registries.conf`, and the `registries.conf.d` drop-ins
  (the system's, unless the user's own file is used, and the user's).

`host_access` answers for one host, or says why not (`Unsupported`): a
credential helper, an identity token, a mirror, a rewritten location, a
blocked host, a certs.d directory, a proxy. The caller then leaves the host
to skopeo, which implements all of those. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class Unsupported(Exception):
    """This host's configuration needs more than plain HTTP(S) with basic credentials: leave it to skopeo."""


@dataclass(frozen=True)
class HostAccess:
    """How to reach one registry host: whether plain HTTP is allowed, and the credentials per repository."""

    host: str
    insecure: bool
    auth_files: tuple[dict, ...]  # the parsed auth files, in lookup order

    def credentials(self, repository: str) -> tuple[str, str] | None:
        """(user, password) for `<host>/<path>`, or None for anonymous access."""
        keys = _namespaces(repository)
        for auths in self.auth_files:
            helpers = auths.get("credHelpers")
            if isinstance(helpers, dict) and any(key in helpers for key in keys):
                raise Unsupported("a credential helper holds this registry's credentials")
            entries = auths.get("auths", auths)
            if not isinstance(entries, dict):
                raise Unsupported("an auth file without an 'auths' table")
            for key in keys:
                if key in entries:
                    return _decode(entries[key])
            for key, entry in entries.items():
                if isinstance(key, str) and _normalized(key) == self.host:
                    return _decode(entry)
            if isinstance(auths.get("credsStore"), str):
                raise Unsupported("a credential store (credsStore) may hold this registry's credentials")
        return None


def host_access(host: str, environ: dict[str, str] | None = None) -> HostAccess:
    """The configuration for `host`; Unsupported if reaching it needs more than this module knows."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    for certs in ("/etc/containers/certs.d", "/etc/docker/certs.d", str(home / ".config/containers/certs.d")):
        if os.path.isdir(os.path.join(certs, host)):
            raise Unsupported(f"{certs}/{host} configures TLS for this registry")
    if host.rpartition(":")[0] not in LOOPBACK and host not in LOOPBACK and _proxied(host):
        raise Unsupported("a proxy is configured for this registry")
    return HostAccess(host, _insecure(host, env, home), tuple(_auth_files(env, home)))


def _proxied(host: str) -> bool:
    import urllib.request  # slow to import, and loopback registries never need it

    proxies = urllib.request.getproxies()
    return bool(proxies.get("https") or proxies.get("http")) and not urllib.request.proxy_bypass(host)


# ---------------------------------------------------------------- registries.conf


def _registries_conf_files(env: dict[str, str] | os._Environ, home: Path) -> list[str]:
    # as containers/image chooses (sysregistriesv2's config wrapper): the user's own registries.conf,
    # unless one is given, replaces the system's file and the system's drop-ins
    chosen = env.get("CONTAINERS_REGISTRIES_CONF")
    user = home / ".config/containers/registries.conf"
    system_dir, user_dir = "/etc/containers/registries.conf.d", str(home / ".config/containers/registries.conf.d")
    if chosen:
        dirs = [system_dir, user_dir]
    elif user.exists():
        chosen, dirs = str(user), [user_dir]
    else:
        chosen, dirs = "/etc/containers/registries.conf", [system_dir, user_dir]
    return [chosen, *(path for folder in dirs for path in sorted(glob.glob(f"{folder}/*.conf")))]


def _insecure(host: str, env: dict[str, str] | os._Environ, home: Path) -> bool:
    """Whether registries.conf marks `host` insecure; Unsupported if it does more with it than that."""
    answers: set[bool] = set()
    for path in _registries_conf_files(env, home):
        try:
            with open(path, "rb") as file:
                conf = tomllib.load(file)
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise Unsupported(f"{path}: {err}") from None
        try:
            answers |= _answers(conf, host)
        except (AttributeError, TypeError, KeyError):  # a shape containers/image would refuse: skopeo says why
            raise Unsupported(f"{path}: not the shape registries.conf has") from None
    if len(answers) > 1:
        raise Unsupported("registries.conf says both insecure and not for this registry")
    return answers == {True}


def _answers(conf: dict, host: str) -> set[bool]:
    """What one registries.conf says about `host` being insecure."""
    answers = set()
    helpers = conf.get("credential-helpers")
    if helpers not in (None, ["containers-auth.json"]):
        raise Unsupported("registries.conf names credential helpers")
    legacy = conf.get("registries") or {}
    if host in _listed(legacy, "block"):
        raise Unsupported("registries.conf blocks this registry")
    if host in _listed(legacy, "insecure"):
        answers.add(True)
    entries = conf.get("registry") or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise TypeError("registry is not an array of tables")
    for entry in entries:
        prefix = str(entry.get("prefix") or entry.get("location") or "")
        if not _matches(prefix, host):
            continue
        if "/" in prefix:  # settings for some repositories of the host only
            raise Unsupported("registries.conf has settings for a namespace of this registry")
        if entry.get("mirror") or entry.get("blocked"):
            raise Unsupported("registries.conf gives this registry mirrors or blocks it")
        if entry.get("location") and entry.get("prefix") and entry["location"] != entry["prefix"]:
            raise Unsupported("registries.conf rewrites this registry's location")
        answers.add(bool(entry.get("insecure", False)))
    return answers


def _listed(legacy: dict, kind: str) -> list:
    """The hosts of a version 1 `[registries.<kind>] registries = [...]` table."""
    table = legacy.get(kind) or {}
    hosts = table.get("registries", [])
    if not isinstance(hosts, list):
        raise TypeError(f"registries.{kind}.registries is not a list")
    return hosts


def _matches(prefix: str, host: str) -> bool:
    """Whether a registries.conf prefix covers repositories on `host`."""
    prefix_host = prefix.split("/")[0]
    if prefix_host.startswith("*."):
        return host.split(":")[0].endswith(prefix_host[1:])
    return prefix_host == host


# ---------------------------------------------------------------- auth files


def _auth_files(env: dict[str, str] | os._Environ, home: Path) -> list[dict]:
    chosen = env.get("REGISTRY_AUTH_FILE")
    if chosen:
        paths = [chosen]
    else:
        runtime = env.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
        config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        docker = env.get("DOCKER_CONFIG")
        paths = [f"{runtime}/containers/auth.json", f"{config}/containers/auth.json",
                 f"{docker}/config.json" if docker else str(home / ".docker/config.json"), str(home / ".dockercfg")]
    found = []
    for path in paths:
        try:
            with open(path, "rb") as file:
                parsed = json.load(file)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise Unsupported(f"{path}: {err}") from None
        if not isinstance(parsed, dict):
            raise Unsupported(f"{path}: not a JSON object")
        found.append(parsed)
    return found


def _namespaces(repository: str) -> list[str]:
    """`host/a/b/c` → `host/a/b/c`, `host/a/b`, `host/a`, `host`: the most specific first."""
    parts = repository.split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _normalized(key: str) -> str:
    """A legacy auth key (`https://host/v1/`) as its host."""
    return key.split("://", 1)[-1].split("/", 1)[0]


def _decode(entry: object) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        raise Unsupported("an auth entry that is not an object")
    if entry.get("identitytoken"):
        raise Unsupported("an identity token (OAuth) for this registry")
    encoded = entry.get("auth")
    if not encoded:
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Unsupported("an auth entry that is not base64 of user:password") from None
    return user, password
