"""Registry reads against small scripted servers: what a real registry seldom does, the reader survives.

A token realm that redirects elsewhere or refuses one repository, a forked
child beside its parent's kept-alive connections, answers of the wrong
shape or trickling in, a registry that lets anyone in.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from podrelease.registry import distribution
from podrelease.registry.containersconf import HostAccess
from podrelease.registry.distribution import Declined, Reader


class Scripted(http.server.ThreadingHTTPServer):
    """A server on 127.0.0.1 answering as its handler class says; `seen` records (path, detail) per request."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.seen: list[tuple[str, str | None]] = []
        self.realm = ""
        self.redirect = ""
        self.host = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Answering(http.server.BaseHTTPRequestHandler):
    """Keep-alive, as docker-registry: each request recorded with the client's port (its connection)."""

    protocol_version = "HTTP/1.1"
    server: Scripted

    def log_message(self, *args) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, str(self.client_address[1])))
        self.answer(200, b'{"name": "some/repo", "tags": ["1.0.0"]}' if self.path.endswith("tags/list") else b"{}")


@contextlib.contextmanager
def serving(handler: type[Answering], credentials: str | None = None) -> Iterator[tuple[Scripted, Reader]]:
    """The server, and a reader of it (with `credentials` in its auth file), both closed afterwards."""
    server = Scripted(handler)
    auth = ({"auths": {server.host: {"auth": base64.b64encode(credentials.encode()).decode()}}},) if credentials else ()
    access = HostAccess(server.host, insecure=True, auth_files=auth)
    reader = Reader(server.host, access=lambda _host: access)
    try:
        yield server, reader
    finally:
        for connection in reader._idle:
            connection.close()
        server.shutdown()
        server.server_close()


def test_one_kept_alive_connection_serves_read_after_read():
    with serving(Answering) as (server, reader):
        for _ in range(5):
            assert reader.tags(f"{server.host}/some/repo") == {"1.0.0"}
        assert len({port for path, port in server.seen if path.endswith("tags/list")}) == 1


class RedirectingRealm(Answering):
    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v2/":
            self.answer(401, WWW_Authenticate=f'Bearer realm="{self.server.realm}",service="r"')
        elif self.path.startswith("/token") and self.server.redirect:
            self.answer(302, Location=self.server.redirect)
        else:
            self.answer(404)


def test_a_token_realm_redirecting_to_another_host_gets_no_credentials():
    with serving(RedirectingRealm, "user:secret") as (registry, reader), serving(RedirectingRealm) as (elsewhere, _):
        registry.realm = f"http://{registry.host}/token"
        registry.redirect = f"http://localhost:{elsewhere.server_address[1]}/steal"  # another host
        with pytest.raises(Declined):
            reader.tags(f"{registry.host}/some/repo")
        assert [auth for _path, auth in elsewhere.seen if auth] == []  # the redirect is not followed at all


def test_a_forked_child_does_not_share_its_parents_kept_alive_connections():
    """doit -n 2 (processes, forked on Linux) inherits the reader prefetch filled: two processes
    writing requests on one socket read each other's answers (on plain HTTP silently)."""
    with serving(Answering) as (server, reader):
        assert reader.tags(f"{server.host}/some/repo") == {"1.0.0"}  # the parent's connection, now idle in the pool
        pid = os.fork()
        if pid == 0:
            try:
                reader.tags(f"{server.host}/some/repo")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        ports = [port for path, port in server.seen if path.endswith("tags/list")]
        assert len(ports) == 2 and ports[0] != ports[1], "the child asked on its parent's socket"


class OddTags(Answering):
    def do_GET(self) -> None:
        self.answer(200, b'{"name": "some/repo", "tags": 5}' if self.path.endswith("tags/list") else b"{}")


def test_a_tag_list_of_the_wrong_shape_is_left_to_skopeo():
    with serving(OddTags) as (server, reader), pytest.raises(Declined):
        reader.tags(f"{server.host}/some/repo")


class HidingWithoutCredentials(Answering):
    """/v2/ open to anyone, so no client sends credentials; a repository 404s unless asked with some."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v2/" or self.headers.get("Authorization"):
            self.answer(200, b'{"name": "private/repo", "tags": ["1.0.0"]}' if self.path.endswith("tags/list") else b"{}")
        else:
            self.answer(404, b'{"errors": [{"code": "NAME_UNKNOWN"}]}')


def test_a_registry_open_to_anyone_is_read_without_credentials_as_skopeo_reads_it():
    """containers/image sends credentials only when challenged: skopeo too finds no tags here."""
    with serving(HidingWithoutCredentials, "user:secret") as (server, reader):
        assert reader.tags(f"{server.host}/private/repo") == set()
        assert [auth for _path, auth in server.seen if auth] == []


TRICKLED = b'{"name": "some/repo", "tags": ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]}'


class Trickling(Answering):
    """/v2/ at once; a tag list one byte every 0.2 s, counting the bytes it got out before the client hung up."""

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.answer(200)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(TRICKLED)))
        self.end_headers()
        sent = 0
        try:
            for byte in TRICKLED:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                sent += 1
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            self.server.sent = sent  # type: ignore[attr-defined]
            self.server.done.set()  # type: ignore[attr-defined]


def test_a_trickling_answer_is_given_up_at_the_deadline_not_once_it_has_all_arrived(monkeypatch):
    monkeypatch.setattr(distribution, "TIMEOUT", 1)  # each byte comes well within it; the whole answer does not
    with serving(Trickling) as (server, reader):
        server.done = threading.Event()  # type: ignore[attr-defined]
        with pytest.raises(Declined):
            reader.tags(f"{server.host}/some/repo")
        assert server.done.wait(30)  # type: ignore[attr-defined]
        assert server.sent < len(TRICKLED) // 2, "the reader waited for the whole trickle before its deadline counted"  # type: ignore[attr-defined]


class RealmRefusingOneRepository(Answering):
    """Bearer auth, as GitLab's jwt/auth: 403 for the scope of forbidden/repo, a token for any other."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/v2/":
            self.answer(401, WWW_Authenticate=f'Bearer realm="http://{self.server.host}/token",service="r"')
        elif self.path.startswith("/token"):
            scope = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("scope", [""])[0]
            if scope == "repository:forbidden/repo:pull":
                self.answer(403, b'{"errors": [{"code": "DENIED", "message": "access forbidden"}]}')
            else:
                self.answer(200, b'{"token": "t-%s"}' % scope.encode())
        elif self.headers.get("Authorization", "").startswith("Bearer t-"):
            self.answer(200, b'{"name": "x", "tags": ["1.0.0"]}' if self.path.endswith("tags/list") else b"{}")
        else:
            self.answer(401, WWW_Authenticate=f'Bearer realm="http://{self.server.host}/token",service="r"')


def test_a_realm_refusing_one_repository_leaves_the_others_read_over_http():
    with serving(RealmRefusingOneRepository, "user:secret") as (server, reader):
        with pytest.raises(Declined):
            reader.tags(f"{server.host}/forbidden/repo")  # skopeo words the refusal
        assert reader.tags(f"{server.host}/allowed/repo") == {"1.0.0"}


def test_a_realm_refusing_a_repository_is_not_asked_again_for_it():
    with serving(RealmRefusingOneRepository, "user:secret") as (server, reader):
        for _ in range(3):
            with pytest.raises(Declined):
                reader.tags(f"{server.host}/forbidden/repo")
        assert len([path for path, _auth in server.seen if "forbidden" in path and path.startswith("/token")]) == 1


class NotOnlyStrings(Answering):
    def do_GET(self) -> None:
        self.answer(200, b'{"name": "some/repo", "tags": ["1.0.0", 2]}' if self.path.endswith("tags/list") else b"{}")


def test_a_tag_list_holding_other_than_strings_is_left_to_skopeo():
    """skopeo decodes tags as []string and refuses this list; the reader must not answer a part of it."""
    with serving(NotOnlyStrings) as (server, reader), pytest.raises(Declined):
        reader.tags(f"{server.host}/some/repo")
