"""Registry reads against small scripted servers: what a real registry seldom does, the reader survives.

A token realm that redirects elsewhere, a forked child beside its parent's
kept-alive connections, answers of the wrong shape, a registry that lets
anyone in and hides a private repository behind a 404.
"""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from podrelease.registry.containersconf import HostAccess
from podrelease.registry.distribution import Declined, Reader


class _Recorder(http.server.ThreadingHTTPServer):
    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.seen: list[tuple[str, str | None]] = []
        self.realm = ""
        self.redirect = ""
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v2/":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{self.server.realm}",service="r"')
        elif self.path.startswith("/token") and self.server.redirect:
            self.send_response(302)
            self.send_header("Location", self.server.redirect)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def servers():
    registry, elsewhere = _Recorder(_Handler), _Recorder(_Handler)
    yield registry, elsewhere
    for server in (registry, elsewhere):
        server.shutdown()
        server.server_close()


def test_a_token_realm_redirecting_to_another_host_gets_no_credentials(servers):
    registry, elsewhere = servers
    host = f"127.0.0.1:{registry.port}"
    registry.realm = f"http://{host}/token"
    registry.redirect = f"http://localhost:{elsewhere.port}/steal"  # another host
    secret = base64.b64encode(b"user:secret").decode()
    access = HostAccess(host, insecure=True, auth_files=({"auths": {host: {"auth": secret}}},))
    with pytest.raises(Declined):
        Reader(host, access=lambda _host: access).tags(f"{host}/some/repo")
    assert [auth for _path, auth in elsewhere.seen if auth] == []  # the redirect is not followed at all


class _Open(http.server.BaseHTTPRequestHandler):
    """A registry without auth: every request recorded with the client's port (its connection)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as docker-registry
    server: _Recorder

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, str(self.client_address[1])))
        body = b'{"name": "some/repo", "tags": ["1.0.0"]}' if self.path.endswith("tags/list") else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_forked_child_does_not_share_its_parents_kept_alive_connections():
    """doit -n 2 (processes, forked on Linux) inherits the reader prefetch filled: two processes
    writing requests on one socket read each other's answers (on plain HTTP silently)."""
    import os

    server = _Recorder(_Open)
    try:
        host = f"127.0.0.1:{server.port}"
        reader = Reader(host, access=lambda _host: HostAccess(host, insecure=True, auth_files=()))
        assert reader.tags(f"{host}/some/repo") == {"1.0.0"}  # the parent's connection, now idle in the pool
        pid = os.fork()
        if pid == 0:
            try:
                reader.tags(f"{host}/some/repo")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        ports = [port for path, port in server.seen if path.endswith("tags/list")]
        assert len(ports) == 2 and ports[0] != ports[1], "the child asked on its parent's socket"
    finally:
        for connection in reader._idle:
            connection.close()
        server.shutdown()
        server.server_close()


class _OddTags(_Open):
    def do_GET(self) -> None:
        body = b'{"name": "some/repo", "tags": 5}' if self.path.endswith("tags/list") else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_tag_list_of_the_wrong_shape_is_left_to_skopeo():
    """Anything but Declined escapes Reads as a traceback."""
    server = _Recorder(_OddTags)
    host = f"127.0.0.1:{server.port}"
    reader = Reader(host, access=lambda _host: HostAccess(host, insecure=True, auth_files=()))
    try:
        with pytest.raises(Declined):
            reader.tags(f"{host}/some/repo")
    finally:
        for connection in reader._idle:
            connection.close()
        server.shutdown()
        server.server_close()


class _AnonymousHiding(_Open):
    """/v2/ open to anyone; a repository 404s unless asked with credentials."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v2/" or self.headers.get("Authorization"):
            body = b'{"name": "private/repo", "tags": ["1.0.0"]}' if self.path.endswith("tags/list") else b"{}"
            self.send_response(200)
        else:
            body = b'{"errors": [{"code": "NAME_UNKNOWN"}]}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_404_to_a_request_without_the_credentials_the_auth_file_holds_is_left_to_skopeo():
    server = _Recorder(_AnonymousHiding)
    host = f"127.0.0.1:{server.port}"
    secret = base64.b64encode(b"user:secret").decode()
    access = HostAccess(host, insecure=True, auth_files=({"auths": {host: {"auth": secret}}},))
    reader = Reader(host, access=lambda _host: access)
    try:
        with pytest.raises(Declined, match="without credentials"):
            reader.tags(f"{host}/private/repo")
    finally:
        for connection in reader._idle:
            connection.close()
        server.shutdown()
        server.server_close()
