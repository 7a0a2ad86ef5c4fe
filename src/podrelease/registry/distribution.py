"""Registry reads over HTTP: tag lists and manifests, on connections kept alive.

Why podrelease speaks the distribution API here at all: a fresh CI runner
asks the registry two questions per pod (its tags, and what `tip` names)
before it knows there is nothing to do. As a skopeo process each question
costs about 18 ms of CPU, a whole process start, and the registry's
password check; on kept-alive HTTP it costs one request of 2 to 3 ms. That
difference is most of a warm run. And a restored `image.aci` must be
inflated and hashed for its id: read as it arrives, that happens while it
downloads instead of after. So only these reads go over HTTP:

- `GET /v2/<name>/tags/list`, following `Link: <...>; rel="next"` pages;
- `GET /v2/<name>/manifests/<reference>`, accepting every manifest type, so
  the registry answers with the stored bytes, whose sha256 is the digest;
- `GET /v2/<name>/blobs/<digest>` for the ACI companion's files, streamed
  to the caller, checked against their size and digest as they arrive.

Everything else (OCI images, pods, volumes, every push) stays with skopeo. The reader only
answers when it can answer exactly as skopeo would; otherwise it declines
(`Declined`) and `Reads` asks skopeo instead, which then also words any
error. It declines a whole host whose configuration needs more than HTTP(S)
with basic credentials (`containersconf.Unsupported`: credential helpers,
mirrors, certs.d, proxies) or that answers `/v2/` neither with 200 nor with a
Basic or Bearer challenge. It declines one request that gets anything but
200, or 404 for what does not exist: refused credentials, 5xx while racing
writers update a tag, a blob served from elsewhere (a redirect), a broken
connection, an oversized or trickling answer, a blob that is not its
digest, a 404 to a request sent without the credentials the auth file
holds (a private repository may hide behind it).

Auth is what the challenge asks for: Basic with the auth file's
credentials, or a Bearer token from the challenge's realm (with those
credentials, or anonymous), cached per repository, fetched by one reader
while the others of that repository wait, and fetched again once when
refused. Credentials go to the registry and to the realm it names, never
further: no redirect is followed, and a registry on HTTPS may not name a
realm on plain HTTP. A realm that refuses them leaves the host to skopeo.
Plain HTTP is used only for a host registries.conf marks insecure, after
HTTPS failed, as skopeo does.

`PODRELEASE_SKOPEO` changes how skopeo is run, not these reads: they use
the auth file and registries.conf the environment names.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator

from .containersconf import HostAccess, Unsupported, host_access
from .skopeo import Skopeo

TIMEOUT = 60  # seconds for one request
PING_TIMEOUT = 10  # seconds for the first, which tells whether the host answers at all
MAX_MANIFEST = 4 << 20
MAX_TAG_PAGE = 16 << 20
MAX_TOKEN = 1 << 20
MAX_PAGES = 10_000
MAX_TAGS = 64 << 20  # bytes of tag lists, all pages together
BODY_CHUNK = 1 << 20  # bytes read at most at once
BLOB_DEADLINE = 3600  # seconds for one blob, as for a skopeo copy
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
))
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
NEXT_PAGE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
RETRIABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


class Declined(Exception):
    """This read is not answered over HTTP: ask skopeo."""


class Reader:
    """Reads from one registry host over a small pool of kept-alive connections; safe across threads.

    A child process (doit's `-n` workers are forked) starts with an empty
    pool and fresh locks: two processes writing on one socket would read
    each other's answers.
    """

    def __init__(self, host: str, access: Callable[[str], HostAccess] = host_access, page_size: int | None = None):
        self.host = host
        self._first_page = "tags/list" if page_size is None else f"tags/list?n={page_size}"  # the registry's default
        self._access_of = access
        self._lock = threading.Lock()  # guards the pool and the token cache
        self._once = threading.Lock()  # the first request pings alone
        self._fetching: dict[str, threading.Lock] = {}  # per token scope: one fetch at a time, the others wait
        self._idle: list[http.client.HTTPConnection] = []
        self._ready = False
        self._off: str | None = None  # why the whole host is left to skopeo
        self._scheme = "https"
        self._context: ssl.SSLContext | None = None
        self._access: HostAccess | None = None
        self._challenge: tuple[str, dict[str, str]] = ("none", {})
        self._tokens: dict[str, str] = {}
        self._refused: set[str] = set()  # token scopes the realm refused: not asked again
        weakref.finalize(self, _close_all, self._idle)  # kept-alive connections end with their reader
        _READERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's connections and locks are the parent's."""
        self._idle[:] = []  # the child's copies of the parent's sockets: closed with the list's last reference
        self._lock = threading.Lock()
        self._once = threading.Lock()
        self._fetching = {}

    # ---------------------------------------------------------------- the reads

    def manifest(self, repository: str, reference: str) -> bytes | None:
        status, body, _ = self._get(repository, f"manifests/{urllib.parse.quote(reference, safe=':')}",
                                    {"Accept": MANIFEST_TYPES}, MAX_MANIFEST)
        if status == 404:
            return None
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(body).hexdigest() != reference:
            raise Declined(f"the manifest served for {reference} has another digest")
        return body

    def tags(self, repository: str) -> set[str]:
        found: set[str] = set()
        path = self._first_page
        budget = MAX_TAGS
        for page in range(MAX_PAGES):
            status, body, link = self._get(repository, path, {"Accept": "application/json"}, min(MAX_TAG_PAGE, budget))
            if status == 404:
                if page:
                    raise Declined("a later page of the tag list is gone")
                return found
            budget -= len(body)
            try:
                tags = json.loads(body).get("tags")
            except (ValueError, AttributeError, RecursionError):
                raise Declined("the tag list is not JSON") from None
            if tags is None:
                tags = []
            if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                raise Declined("the tag list holds something else than a list of tags")  # as skopeo refuses it
            found.update(tags)
            following = NEXT_PAGE.search(link or "")
            if not following:
                return found
            try:
                url = urllib.parse.urlsplit(following.group(1))
            except ValueError:
                raise Declined("the tag list's next page is no URL") from None
            prefix = f"/v2/{self._name(repository)}/"
            if url.netloc not in ("", self.host) or not url.path.startswith(prefix):
                raise Declined("the tag list's next page is elsewhere")
            path = url.path[len(prefix):] + (f"?{url.query}" if url.query else "")
        raise Declined("the tag list has too many pages")

    def blob(self, repository: str, digest: str, size: int, sink: Callable[[bytes], object]) -> None:
        """Stream blob `digest`, exactly `size` bytes, to `sink`, checked against its digest as it arrives.

        Declined if the registry serves it from elsewhere (a redirect), or
        serves anything but those bytes: the caller then discards what
        `sink` got and asks skopeo.
        """
        if not digest.startswith("sha256:"):
            raise Declined(f"{digest}: only sha256 blobs are read here")
        connection, response = self._open(repository, f"blobs/{digest}", {})
        if response.status != 200:
            self._finish(connection, response, MAX_TOKEN)
            raise Declined(f"blob {digest} is not in {repository}")
        hasher, received = hashlib.sha256(), 0
        try:
            for piece in _pieces(connection, response, size, time.monotonic() + BLOB_DEADLINE):
                received += len(piece)
                hasher.update(piece)
                sink(piece)  # its own errors (a full disk) are the caller's, not a reason to ask skopeo
        except BaseException:
            connection.close()
            raise
        if received != size or "sha256:" + hasher.hexdigest() != digest:
            connection.close()
            raise Declined(f"blob {digest} arrived as {received} bytes of another digest")
        self._release(connection, response)

    # ---------------------------------------------------------------- requests

    def _name(self, repository: str) -> str:
        host, _, name = repository.partition("/")
        if host != self.host or not name:
            raise Declined(f"{repository} is not on {self.host}")
        return name

    def _get(self, repository: str, path: str, headers: dict[str, str], cap: int) -> tuple[int, bytes, str | None]:
        """(status 200 or 404, body, Link header) of GET /v2/<name>/<path>; Declined for anything else."""
        connection, response = self._open(repository, path, headers)
        body = self._finish(connection, response, cap)
        return response.status, body, response.headers.get("Link")

    def _open(self, repository: str, path: str, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET /v2/<name>/<path> with the auth the host asks for: a response of status 200 or 404, body unread."""
        name = self._name(repository)
        self._prepare()
        refused = None  # the Authorization a 401 answered: its token is fetched again, once
        for _ in range(2):
            auth = self._authorization(repository, name, refused)
            connection, response = self._send(f"/v2/{name}/{path}", {**headers, **auth})
            if response.status in (200, 404):
                return connection, response
            self._finish(connection, response, MAX_TOKEN)
            if response.status != 401 or self._challenge[0] != "bearer":
                break
            refused = auth.get("Authorization")
        raise Declined(f"the registry answered {response.status}")

    def _send(self, path: str, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        for attempt in (0, 1):
            connection = self._connection(pooled=attempt == 0)
            try:
                connection.request("GET", path, headers={"Host": self.host, **headers})
                return connection, connection.getresponse()
            except RETRIABLE:  # a kept-alive connection the registry closed meanwhile: once more on a new one
                connection.close()
                if attempt == 1:
                    raise Declined("the connection broke") from None
                with self._lock:  # the others idled as long: most likely closed too
                    stale, self._idle[:] = list(self._idle), []
                _close_all(stale)
            except (OSError, http.client.HTTPException) as err:
                connection.close()
                raise Declined(f"{type(err).__name__}: {err}") from None
        raise AssertionError("unreachable")

    def _finish(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, cap: int) -> bytes:
        """The rest of the body (at most `cap` bytes, within TIMEOUT in all); the connection goes back to the pool if it can serve again."""
        body = b"".join(_pieces(connection, response, cap, time.monotonic() + TIMEOUT))
        self._release(connection, response)
        return body

    def _release(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.isclosed() and not response.will_close and connection.sock is not None:
            connection.sock.settimeout(TIMEOUT)
            with self._lock:
                self._idle.append(connection)
        else:
            connection.close()

    def _connection(self, pooled: bool = True) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle and pooled:
                return self._idle.pop()
        if self._scheme == "https":
            return http.client.HTTPSConnection(self.host, timeout=TIMEOUT, context=self._context)
        return http.client.HTTPConnection(self.host, timeout=TIMEOUT)

    # ---------------------------------------------------------------- the host, once

    def _prepare(self) -> None:
        with self._once:
            if not self._ready:
                try:
                    self._ping()
                except (Unsupported, Declined) as why:
                    self._off = str(why)
                self._ready = True
        if self._off is not None:
            raise Declined(self._off)

    def _ping(self) -> None:
        """Choose the scheme, read the host's configuration and its auth challenge: `GET /v2/`."""
        self._access = self._access_of(self.host)
        schemes = ("https", "http") if self._access.insecure else ("https",)
        for scheme in schemes:
            self._scheme = scheme
            self._context = None
            if scheme == "https" and self._access.insecure:  # unverified, as skopeo does: no CA store to load
                self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
            elif scheme == "https":
                self._context = ssl.create_default_context()
            connection = self._connection()
            connection.timeout = PING_TIMEOUT  # a host that never answers is left to skopeo soon
            try:
                connection.request("GET", "/v2/", headers={"Host": self.host})
                response = connection.getresponse()
                b"".join(_pieces(connection, response, MAX_TOKEN, time.monotonic() + PING_TIMEOUT))
            except (OSError, http.client.HTTPException, Declined):
                connection.close()
                continue
            connection.close()
            if response.status == 200:
                return
            if response.status == 401:
                self._challenge = _challenge(response.headers.get("WWW-Authenticate", ""))
                return
            raise Declined(f"/v2/ answered {response.status}")
        raise Declined("the registry could not be reached over HTTP")

    def _authorization(self, repository: str, name: str, refused: str | None) -> dict[str, str]:
        kind, params = self._challenge
        if kind == "none":
            return {}
        assert self._access is not None
        try:
            credentials = self._access.credentials(repository)
        except Unsupported as why:
            raise Declined(str(why)) from None
        if kind == "basic":
            if credentials is None:
                raise Declined("the registry asks for credentials and the auth file has none")
            return {"Authorization": f"Basic {_basic(credentials)}"}
        scope = f"repository:{name}:pull"
        with self._lock:
            gate = self._fetching.setdefault(scope, threading.Lock())
        with gate:  # concurrent reads of one repository wait for one token instead of each fetching one
            with self._lock:
                token = self._tokens.get(scope)
                if scope in self._refused:
                    raise Declined("the registry's realm refused a token for this repository")
            if token is None or f"Bearer {token}" == refused:  # another reader may have replaced it meanwhile
                token = self._token(params, scope, credentials)
                with self._lock:
                    self._tokens[scope] = token
        return {"Authorization": f"Bearer {token}"}

    def _token(self, params: dict[str, str], scope: str, credentials: tuple[str, str] | None) -> str:
        """A Bearer token for `scope` from the challenge's realm: one request, no redirect followed
        (credentials go to the realm the registry named, and nowhere else).

        A realm that refuses (or sends us elsewhere) is not asked again for
        this scope: other repositories, or other credentials for another
        namespace, may still get tokens.
        """
        realm = urllib.parse.urlsplit(params.get("realm", ""))
        if realm.scheme not in ("https", "http") or not realm.netloc:
            raise Declined("the Bearer challenge names no realm")
        if realm.scheme == "http" and self._scheme == "https":
            raise Declined("a registry on HTTPS names a realm on plain HTTP")
        fields = (("account", credentials[0] if credentials else None), ("service", params.get("service")), ("scope", scope))
        query = urllib.parse.urlencode({k: v for k, v in fields if v})
        path = f"{realm.path or '/'}?{realm.query + '&' if realm.query else ''}{query}"
        connection = (http.client.HTTPSConnection(realm.netloc, timeout=TIMEOUT, context=self._context)
                      if realm.scheme == "https" else http.client.HTTPConnection(realm.netloc, timeout=TIMEOUT))
        try:
            connection.request("GET", path, headers={"Authorization": f"Basic {_basic(credentials)}"} if credentials else {})
            response = connection.getresponse()
            status = response.status
            body = b"".join(_pieces(connection, response, MAX_TOKEN, time.monotonic() + TIMEOUT))
        except (OSError, http.client.HTTPException) as err:
            raise Declined(f"the registry's realm: {type(err).__name__}: {err}") from None
        finally:
            connection.close()
        if status != 200:
            with self._lock:
                self._refused.add(scope)
            raise Declined(f"the registry's realm answered {status} for {scope}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise Declined("the registry's realm gave no token")
        return token


def _basic(credentials: tuple[str, str]) -> str:
    return base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


def _pieces(connection: http.client.HTTPConnection, response: http.client.HTTPResponse, most: int,
            deadline: float) -> Iterator[bytes]:
    """A response's body as it arrives, at most `most` bytes. Declined, the connection closed, for
    more, for a broken connection, or once `deadline` (monotonic) passes, even in mid-trickle:
    each read waits no longer than what is left."""
    got = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            connection.close()
            raise Declined("the answer is slower than any we expect")
        if connection.sock is not None:
            connection.sock.settimeout(min(TIMEOUT, left))
        try:
            piece = response.read1(min(BODY_CHUNK, most + 1 - got))
        except (OSError, http.client.HTTPException) as err:
            connection.close()
            raise Declined(f"{type(err).__name__}: {err}") from None
        if not piece:
            response.close()  # read1 leaves a finished body open: the connection could not be reused
            return
        got += len(piece)
        if got > most:
            connection.close()
            raise Declined("the answer is larger than any we expect")
        yield piece


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    for connection in connections:
        connection.close()


def _forget_parent_connections() -> None:
    for reader in list(_READERS):
        reader._after_fork()


_READERS: weakref.WeakSet[Reader] = weakref.WeakSet()
os.register_at_fork(after_in_child=_forget_parent_connections)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme = header.split(" ", 1)[0].lower()
    if scheme not in ("basic", "bearer"):
        raise Declined(f"the registry asks for {scheme or 'an unnamed'} auth")
    return scheme, dict(CHALLENGE.findall(header))


def _split(reference: str) -> tuple[str, str]:
    """`host/name:tag` or `host/name@sha256:...` as (repository, tag or digest)."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        raise Declined(f"{reference} names no tag")
    return repository, tag


class Reads:
    """The registry reads the store makes: over HTTP where `Reader` answers, by skopeo otherwise."""

    def __init__(self, skopeo: Skopeo, reader: Reader | None = None):
        self.skopeo = skopeo
        self.reader = reader or Reader(skopeo.host)

    def manifest(self, reference: str) -> bytes | None:
        """The raw manifest `reference` names, or None if there is none."""
        try:
            return self.reader.manifest(*_split(reference))
        except Declined:
            return self.skopeo.manifest(reference)

    def digest(self, reference: str) -> str | None:
        """`sha256:<hex>` of the manifest `reference` names, or None."""
        raw = self.manifest(reference)
        return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()

    def tags(self, repository: str) -> set[str]:
        """Every tag of a repository; none if the repository does not exist yet."""
        try:
            return self.reader.tags(repository)
        except Declined:
            return self.skopeo.tags(repository)

    def blob(self, repository: str, digest: str, size: int, sink: Callable[[bytes], object]) -> None:
        """`Reader.blob`: Declined means the caller asks skopeo for what holds the blob."""
        self.reader.blob(repository, digest, size, sink)
