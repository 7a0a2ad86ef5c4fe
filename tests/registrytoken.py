"""A real registry with Bearer token auth for tests: Debian's docker-registry and a token server it trusts.

`TokenServer` is what Docker Hub, GitLab or Harbor put in front of a
registry, kept small: `http.server` in a thread answering
`GET /token?service=...&scope=repository:<name>:<actions>` with a JWT signed
RS256 by a key made with the `openssl` CLI (no Python crypto dependency).
The JWT's header carries the signing certificate (`x5c`, base64 DER), which
distribution 2.8 verifies against its `rootcertbundle`. Its policy:

- Basic credentials it knows get every action a scope asks for; unknown or
  wrong ones get 401 (what a token server says to a bad `podman login`).
- No credentials get `pull` where `anonymous_pull` is set, and otherwise a
  token granting nothing (as Docker Hub does for a private repository), which
  the registry then refuses.
- `lifetime` is the seconds a token is valid; `expire_next(n)` makes the next
  `n` tokens expired when issued. distribution allows 60 s of clock skew, so
  an expired token here is one that ended well over a minute ago.
- `requests` records (scope, user) of every token asked for, so tests can
  count them.

`TokenRegistry` runs docker-registry with `auth: token` pointing at that
server, and writes the auth file and registries.conf a podman user would
have (the host marked insecure: plain HTTP). `rotate_key()` makes the token
server sign with a new key and restarts the registry trusting only that
key's certificate: every token issued before is refused from then on.
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from httpservers import free_port
from registryhelpers import halt, serve

USER = "ci"
PASSWORD = "token-s3cret-for-tests"
SERVICE = "podrelease-token-tests"
ISSUER = "podrelease-token-issuer"
EXPIRED = -3600  # seconds: far beyond distribution's 60 s leeway


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An RSA key and a self-signed certificate for it, made by `openssl` in `folder`."""

    def __init__(self, folder: Path, name: str):
        self.key = folder / f"{name}.key.pem"
        self.cert = folder / f"{name}.cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                        "-subj", f"/CN={name}", "-keyout", str(self.key), "-out", str(self.cert)],
                       capture_output=True, check=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self.x5c = base64.b64encode(der).decode()

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256: JWS `RS256`."""
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                              input=data, capture_output=True, check=True).stdout


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _TokenHTTPServer

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/token" or query.get("service") != [SERVICE]:
            self._answer(400, {"details": "unknown path or service"})
            return
        user = self._user()
        if user is False:
            self._answer(401, {"details": "incorrect username or password"})
            return
        tokens = self.server.tokens
        access = [tokens.grant(user, scope) for scope in query.get("scope", [])]
        token = tokens.issue(user, [entry for entry in access if entry is not None])
        self._answer(200, {"token": token, "access_token": token, "expires_in": tokens.lifetime})

    def _user(self) -> str | None | bool:
        """The user the Basic credentials name, None for none, False for wrong ones."""
        header = self.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if scheme.lower() != "basic" or self.server.tokens.users.get(user) != password:
            return False
        return user

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="podrelease-token-tests"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _TokenHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tokens: TokenServer


class TokenServer:
    """Issues the JWTs docker-registry accepts; see the module docstring for its policy."""

    def __init__(self, key: SigningKey):
        self.key = key
        self.users = {USER: PASSWORD}
        self.lock = threading.Lock()
        self.reset()
        self.httpd = _TokenHTTPServer(("127.0.0.1", 0), _TokenHandler)
        self.httpd.tokens = self
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """The policy a test starts from: valid for 5 minutes, no anonymous pull, nothing counted."""
        with self.lock:
            self.lifetime = 300
            self.anonymous_pull = False
            self._expired_to_come = 0
            self.requests: list[tuple[str, str | None]] = []

    def expire_next(self, count: int = 1) -> None:
        """The next `count` tokens issued are already expired."""
        with self.lock:
            self._expired_to_come = count

    def scopes(self) -> list[str]:
        """The scopes tokens were asked for, in order."""
        with self.lock:
            return [scope for scope, _user in self.requests]

    def grant(self, user: str | None, scope: str) -> dict | None:
        """The `access` entry `user` gets for `repository:<name>:<actions>`; None for a scope of another kind."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        with self.lock:
            self.requests.append((scope, user))
        if kind != "repository" or not name:
            return None
        wanted = [action for action in actions.split(",") if action]
        if user is None:
            wanted = [action for action in wanted if action == "pull" and self.anonymous_pull]
        return {"type": "repository", "name": name, "actions": wanted}

    def issue(self, user: str | None, access: list[dict]) -> str:
        now = int(time.time())
        with self.lock:
            lifetime = self.lifetime
            if self._expired_to_come > 0:
                self._expired_to_come -= 1
                lifetime = EXPIRED
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.key.x5c]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + lifetime,
                  "nbf": min(now, now + lifetime) - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        return f"{signed}.{_b64url(self.key.sign(signed.encode()))}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TokenRegistry:
    """docker-registry on 127.0.0.1 trusting the tokens of its own `TokenServer` (`self.tokens`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._keys = 0
        self.tokens = TokenServer(self._new_key())
        self.registries_conf = folder / "registries.conf"
        self.registries_conf.write_text(f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n')
        self.auth_file = self.write_auth(folder / "auth.json", USER, PASSWORD)
        self.process: subprocess.Popen | None = None
        self.start()

    def _new_key(self) -> SigningKey:
        self._keys += 1
        key = SigningKey(self.folder, f"token-signer-{self._keys}")
        shutil.copyfile(key.cert, self.folder / "rootcertbundle.pem")
        return key

    def _write_config(self) -> None:
        (self.folder / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.folder / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}'}}\n"
            f"auth: {{token: {{realm: '{self.tokens.realm}', service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: {self.folder / 'rootcertbundle.pem'}}}}}\n"
        )

    def start(self) -> None:
        self._write_config()
        self.process = serve(self.folder / "config.yml", self.port)

    def stop(self) -> None:
        halt(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.tokens.stop()

    def rotate_key(self) -> None:
        """Sign with a new key and restart the registry trusting only it: every earlier token is refused."""
        self.stop()
        self.tokens.key = self._new_key()
        self.start()

    def write_auth(self, path: Path, user: str | None, password: str = PASSWORD) -> Path:
        """An auth file as `podman login` writes it at `path`; with no user, one without an entry for this registry."""
        auths = {} if user is None else {self.host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}
        path.write_text(json.dumps({"auths": auths}))
        return path

    def env(self, auth_file: Path | None = None) -> dict[str, str]:
        """What a podman user reaching this registry sets."""
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
                "REGISTRY_AUTH_FILE": str(auth_file or self.auth_file)}

    def skopeo(self, *args: str, auth_file: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """skopeo against this registry, with the auth file (ours unless given) and registries.conf."""
        return subprocess.run(
            ["skopeo", "--registries-conf", str(self.registries_conf), *args],
            env={"REGISTRY_AUTH_FILE": str(auth_file or self.auth_file), "PATH": "/usr/bin:/bin"},
            capture_output=True, check=check, timeout=120,
        )
