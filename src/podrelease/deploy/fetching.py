"""Fetching a pod from a release root served over HTTP(S).

Any static web server that serves a release root (following its symlinks) is
a pod repository: `http://host/channels/prod/web/frontend/1.2.0/pod.json`
names a pod, and every artifact `pod.json` lists is fetched at its path
relative to that URL (so `frontend/image.aci` resolves through the pod
directory's symlink on the server).

Nothing a server sends is trusted, and nothing it does can cost more than
pod.json allows:

- Size. Every file is fetched with the size pod.json declares for it: a
  `Content-Length` that differs is refused before the body is read, a body
  that goes on past the declared size is refused at its first extra byte, and
  one that ends early is retried (resumed) and in the end refused. Small files
  whose size nothing declares (pod.json itself, its signature, an image's
  `sha512` file) are read whole with a fixed cap and refused beyond it.
- Time. `--timeout` bounds the silence between two bytes; the deadline
  (`--deadline`, `Deadline` below) bounds the whole deploy's fetching. When it
  passes, every socket still open is shut down, so a download blocked in a
  read (a server trickling a byte a second, or its headers) ends at once and
  the deploy fails (a deploy by one `HttpOptions` shares one deadline, however
  often it prepares again).
- Place. Redirects are followed only to the same host and port (or from
  http:// to https:// on the same host), never to another scheme: content
  served by another host is refused. Hashes would pin the content anyway, but
  a redirect elsewhere makes the deploy talk to a host nobody chose.

Each file streams to disk through its check (sha512, or the sha512 as stored
plus the inflate-and-hash of an image id) on other threads, see
`core.hashing.copy_verified`: memory stays flat and verification overlaps the
download. Several files are fetched at once by `sources.Downloads`. On a
fast link this is CPU-bound: curl's work (receive, write) plus two sha512
passes over an image (as stored, and inflated) on as many CPUs as there are
(`bench/bench_deploy_http.py` prints the bound it sets on a machine).
Transient failures (connection refused or reset, timeouts, truncated
bodies, HTTP 408/429/5xx) are retried a bounded number of times with
exponential backoff; a retry resumes with a `Range` request when the server
honours it, and starts over otherwise. Content whose hash or size does not
match is refused, never retried: the server has the wrong file.

The standard library's `urllib.request` is used on purpose: it brings HTTPS,
redirects and the usual `*_proxy` environment variables, and its response's
`readinto` fills our buffers without a copy. A library would add nothing
needed here: no pooling is wanted for a handful of large files, and no
library's retry covers a body that breaks halfway, which is the case that
matters, so that loop is ours either way.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..core.errors import FetchError
from ..core.hashing import Check, copy_verified

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"podrelease-ops-onboard/{__version__}"
DEFAULT_DEADLINE = 3600.0  # seconds for all of a deploy's downloads
# A pod.json is a few KiB, and 1 MiB holds thousands of volume files: over HTTP, where
# the server decides how much comes, no more is read (a bundle on disk may hold up to
# core.podjson.MAX_POD_JSON; a signature is capped by core.signing.MAX_SIGNATURE).
MAX_POD_JSON_FETCHED = 1 << 20


@dataclass(frozen=True)
class HttpOptions:
    attempts: int = 4  # tries per file, the first included
    backoff: float = 0.2  # seconds before the first retry; doubles each time
    timeout: float = 30.0  # seconds to connect, and of silence while reading
    deadline: float = DEFAULT_DEADLINE  # seconds for all the downloads of one deploy
    started: float | None = None  # time.monotonic() when the deploy began (None: when a source opens)
    progress: bool | None = None  # None: when stderr is a terminal
    progress_min_bytes: int = 4 << 20  # smaller downloads show no progress


class _Transient(Exception):
    """A failure worth another attempt; the message says what happened."""


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed after {e.partial if isinstance(e.partial, int) else len(e.partial)} bytes of the body (truncated)"
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _is_transient(e: BaseException) -> bool:
    if isinstance(e, urllib.error.HTTPError):
        return e.code in TRANSIENT_STATUS
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return False
        return isinstance(reason, OSError)
    return isinstance(e, (http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout))


class Deadline:
    """The end of one deploy's fetching: past it, or once `stop`ped, no socket stays open.

    Every socket a connection opens is `watch`ed. `stop(why)` (called by a
    timer when the time is up, or by `Downloads` when another download failed)
    shuts each of them down: a thread blocked reading one wakes up at once
    with an end of file, sees `why`, and gives up instead of retrying. A
    socket watched after that is shut down as it is watched. Sockets are never
    closed here (their owners do that), only shut down, so a descriptor number
    reused by someone else is never touched: a closed socket object no longer
    has one.
    """

    def __init__(self, seconds: float, started: float | None = None):
        self.seconds = seconds
        self._end = (time.monotonic() if started is None else started) + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.why: str | None = None
        self._timer = threading.Timer(max(0.0, self.remaining()), self.stop, args=(f"the deadline of {seconds:g}s for the "
                                                                "deploy's downloads passed (--deadline)",))
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets = [s for s in self._sockets if s.fileno() != -1]
            self._sockets.append(sock)
            stopped = self.why is not None
        if stopped:
            _shut(sock)
        return sock

    def stop(self, why: str) -> None:
        with self._lock:
            if self.why is None:
                self.why = why
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def check(self, url: str) -> None:
        """FetchError if stopped (or the time is up even if the timer has not fired yet)."""
        if self.why is None and self.remaining() <= 0:
            self._timer.cancel()
            self.stop(f"the deadline of {self.seconds:g}s for the deploy's downloads passed (--deadline)")
        if self.why is not None:
            raise FetchError(f"{url}: {self.why}")

    def close(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or never connected


def _watched(base: type[http.client.HTTPConnection], deadline: Deadline) -> Callable[..., http.client.HTTPConnection]:
    """A connection class like `base` whose sockets (the TCP one, then TLS over it) `deadline` watches."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            create = self._create_connection
            self._create_connection = lambda *a, **k: deadline.watch(create(*a, **k))

        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self._connection = _watched(http.client.HTTPConnection, deadline)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self._connection = _watched(http.client.HTTPSConnection, deadline)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects on the same host only: same host name and port, or http:// to https://.

    urllib follows redirects to ftp:// and to any host: a server could send
    ops-onboard to talk FTP to any host, or hand an https source's files over to
    plain http, or have a file served by a host nobody chose to trust.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old_scheme, old_host, old_port = _origin(req.full_url)
        new_scheme, new_host, new_port = _origin(newurl)
        same_origin = (new_scheme, new_host, new_port) == (old_scheme, old_host, old_port)
        upgrade = (old_scheme, new_scheme) == ("http", "https") and new_host == old_host and (
            (old_port, new_port) == (80, 443) or old_port == new_port)
        if not (same_origin or upgrade):
            fp.close()
            raise FetchError(f"{req.full_url}: HTTP {code} redirect to {newurl} refused "
                             "(redirects are followed only on the same host and port, and from "
                             "http:// to https://, never to another host or scheme)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NoProgress:
    """What a download reports its bytes to when no progress is shown (tqdm is not even imported)."""

    def advance(self, nbytes: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Download:
    """How far one download got: the check fed so far and the bytes written (what to resume from)."""

    check: Check
    done: int = 0


def _content_range_total(value: str, start: int) -> int | None:
    """The total of `bytes START-END/TOTAL`, if it starts at `start`; None otherwise."""
    head, _, total = value.partition("/")
    if not head.startswith(f"bytes {start}-") or not total.isdigit():
        return None
    return int(total)


class HttpFetcher:
    """GETs with bounded retries, all within one deadline; streams bodies through a check to a file."""

    def __init__(self, options: HttpOptions = HttpOptions(), stream: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self.stream = stream if stream is not None else sys.stderr
        self.sleep = sleep
        self.deadline = Deadline(options.deadline, options.started)
        self._opener = urllib.request.build_opener(
            _HttpHandler(self.deadline), _HttpsHandler(self.deadline), _RedirectHandler)
        self._opener.addheaders = [("User-Agent", USER_AGENT)]
        self._progress_wanted = options.progress if options.progress is not None else self.stream.isatty()

    def close(self) -> None:
        self.deadline.close()

    def _open(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={**headers, "Accept-Encoding": "identity"})
        timeout = max(0.001, min(self.options.timeout, self.deadline.remaining()))
        return self._opener.open(request, timeout=timeout)

    def _retrying(self, url: str, attempt_fn):
        """Run `attempt_fn(attempt)` until it returns, retrying transient failures."""
        attempts = max(1, self.options.attempts)
        for attempt in range(1, attempts + 1):
            self.deadline.check(url)
            try:
                result = attempt_fn(attempt)
                # Shut down while reading, a response may look whole (headers cut short).
                self.deadline.check(url)
                return result
            except urllib.error.HTTPError as e:
                if not _is_transient(e):
                    raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
                failure = f"HTTP {e.code} {e.reason}"
            except _Transient as e:
                failure = str(e)
            except FetchError:
                self.deadline.check(url)  # a stopped download says why it stopped
                raise
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                self.deadline.check(url)  # its sockets were shut down: that is the failure
                if not _is_transient(e):
                    raise FetchError(f"{url}: {_describe(e)}") from None
                failure = _describe(e)
            self.deadline.check(url)
            if attempt == attempts:
                raise FetchError(f"{url}: {failure} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})")
            delay = self.options.backoff * 2 ** (attempt - 1)
            self.stream.write(f"ops-onboard: {url}: {failure}; retrying in {delay:g}s ({attempt + 1}/{attempts})\n")
            self.stream.flush()
            self.sleep(max(0.0, min(delay, self.deadline.remaining())))
        raise AssertionError("unreachable")

    def get_bytes(self, url: str, limit: int) -> tuple[bytes, str]:
        """The whole body of a small resource (at most `limit` bytes) and the URL it came from."""

        def attempt(_n: int) -> tuple[bytes, str]:
            with self._open(url, {}) as resp:
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise FetchError(f"{url}: {int(length)} bytes, more than the {limit} it may have")
                data = resp.read(limit + 1)
                if len(data) > limit:
                    raise FetchError(f"{url}: more than the {limit} bytes it may have")
                if length is not None and length.isdigit() and len(data) < int(length):
                    raise _Transient(f"connection closed after {len(data)} of {length} bytes (truncated)")
                return data, resp.geturl()

        return self._retrying(url, attempt)

    def fetch_to(self, url: str, dest: Path, make_check: Callable[[], Check], what: str, size: int) -> None:
        """Download the `size` bytes at `url` into the new file `dest` through a check.

        Refused (FetchError, `dest` removed) if the server says or sends
        another number of bytes; the caller finishes nothing: the check is
        finished here.
        """
        state = _Download(make_check())
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        out = os.fdopen(fd, "r+b", buffering=0)
        progress: Any = _NoProgress()
        if self._progress_wanted and size >= self.options.progress_min_bytes:
            from ..core.progress import Progress  # tqdm: tens of milliseconds to import, only to be seen

            # Downloads running at once get a line each (tqdm stacks its bars).
            progress = Progress(what, size, stream=self.stream, delay=0, interval=0.1, leave=True, shown=True)
        try:
            with out:

                def attempt(_n: int) -> None:
                    headers = {"Range": f"bytes={state.done}-"} if state.done else {}
                    with self._open(url, headers) as resp:
                        self._receive(url, resp, out, state, make_check, size, progress)

                self._retrying(url, attempt)
                state.check.finish()
                os.fchmod(out.fileno(), 0o644)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            progress.close()

    def _receive(self, url: str, resp: http.client.HTTPResponse, out, state: _Download,
                 make_check: Callable[[], Check], size: int, progress: Any) -> None:
        """One attempt's body, appended to `out` (or written over it if the server starts over)."""
        resumed = False
        if state.done and resp.status == 206:
            total = _content_range_total(resp.headers.get("Content-Range", ""), state.done)
            if total is not None and total != size:
                raise FetchError(f"{url}: {total} bytes, pod.json pins {size} (says the server)")
            resumed = total is not None
        if not resumed and resp.status != 200:
            raise _Transient(f"unexpected HTTP {resp.status} {resp.reason}")
        if state.done and not resumed:
            # The server ignored the range and sends the whole file: start over.
            progress.advance(-state.done)
            out.seek(0)
            out.truncate()
            state.check, state.done = make_check(), 0
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and state.done + int(length) != size:
            sends = state.done + int(length)
            if sends > size:
                raise FetchError(f"{url}: more than the {size} bytes pod.json pins (the server sends {sends})")
            raise FetchError(f"{url}: {sends} bytes, pod.json pins {size} (says the server)")

        def readinto(buffer: memoryview) -> int:
            left = size - state.done
            if left <= 0:
                # All that was declared has come: anything more is refused, not stored.
                if resp.read(1):
                    raise FetchError(f"{url}: more than the {size} bytes pod.json pins")
                return 0
            return resp.readinto(buffer[:left])

        def on_chunk(n: int) -> None:
            state.done += n
            progress.advance(n)

        copy_verified(readinto, out, state.check, on_chunk)
        # http.client's readinto ends quietly when the connection closes early.
        if state.done < size:
            raise _Transient(f"connection closed after {state.done} of {size} bytes (truncated)")


def base_url(pod_json_url: str) -> str:
    """The directory URL that `pod.json`'s relative paths are relative to."""
    parts = urllib.parse.urlsplit(pod_json_url)
    path = parts.path.rsplit("/", 1)[0] + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class HttpSource:
    """A pod directory (or bundle) on a web server, named by its `pod.json` URL."""

    def __init__(self, url: str, options: HttpOptions = HttpOptions(), stream: TextIO | None = None):
        if url.endswith("/"):
            url += "pod.json"
        self.url = url
        self.base = base_url(url)
        self.fetcher = HttpFetcher(options, stream)

    def describe(self, rel: str) -> str:
        return self.base + urllib.parse.quote(rel)

    def read_pod_json(self, limit: int) -> bytes:
        data, final = self.fetcher.get_bytes(self.url, min(limit, MAX_POD_JSON_FETCHED))
        self.base = base_url(final)  # relative to where pod.json really is, after redirects
        return data

    def read_small(self, rel: str, limit: int) -> bytes:
        return self.fetcher.get_bytes(self.describe(rel), limit)[0]

    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check], size: int) -> None:
        self.fetcher.fetch_to(self.describe(rel), dest, make_check, rel, size)

    def cancel(self, why: str) -> None:
        """Make every download still running (and any started later) stop and fail."""
        self.fetcher.deadline.stop(why)

    def close(self) -> None:
        self.fetcher.close()
