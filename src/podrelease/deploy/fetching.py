"""Fetching a pod from a release root served over HTTP(S).

Any static web server that serves a release root (following its symlinks) is
a pod repository: `http://host/channels/prod/web/frontend/1.2.0/pod.json`
names a pod, and every artifact `pod.json` lists is fetched at its path
relative to that URL (so `frontend/image.aci` resolves through the pod
directory's symlink on the server).

Each file streams to disk in 1 MiB chunks through its check (sha512, or the
inflate-and-hash of an image id) on a second thread: memory stays flat and
verification overlaps the download. Transient failures (connection refused or
reset, timeouts, truncated bodies, HTTP 408/429/5xx) are retried a bounded
number of times with exponential backoff; a retry resumes with a `Range`
request when the server honours it, and starts over otherwise. Content whose
hash does not match is refused, never retried: the server has the wrong file.

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
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .. import __version__
from ..core.errors import FetchError
from ..core.hashing import Check, copy_verified
from ..core.progress import Progress

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"podrelease-ops-onboard/{__version__}"


@dataclass(frozen=True)
class HttpOptions:
    attempts: int = 4  # tries per file, the first included
    backoff: float = 0.2  # seconds before the first retry; doubles each time
    timeout: float = 30.0  # seconds to connect, and of silence while reading
    progress: bool | None = None  # None: when stderr is a terminal
    progress_min_bytes: int = 4 << 20  # smaller files show no progress


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


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, and never from https down to http.

    urllib follows redirects to ftp:// too: a server could send ops-onboard to talk
    FTP to any host (and pod.json's other artifacts would be fetched from there), and
    an https source could hand its unhashed pod files over to plain http.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old_scheme = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new_scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if new_scheme not in ("http", "https") or (old_scheme == "https" and new_scheme == "http"):
            fp.close()
            raise FetchError(f"{req.full_url}: HTTP {code} redirect to {newurl} refused "
                             "(only http:// and https:// are followed, never https:// to http://)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class _Download:
    """How far one download got: the check fed so far and the bytes written (what to resume from)."""

    check: Check
    done: int = 0


class HttpFetcher:
    """GETs with bounded retries; streams bodies through a check to a file."""

    def __init__(self, options: HttpOptions = HttpOptions(), stream: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self.stream = stream if stream is not None else sys.stderr
        self.sleep = sleep
        self._opener = urllib.request.build_opener(_RedirectHandler)
        self._opener.addheaders = [("User-Agent", USER_AGENT)]

    def _show_progress(self, total: int | None) -> bool:
        wanted = self.options.progress
        if wanted is None:
            wanted = self.stream.isatty()
        return bool(wanted) and (total is None or total >= self.options.progress_min_bytes)

    def _open(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={**headers, "Accept-Encoding": "identity"})
        return self._opener.open(request, timeout=self.options.timeout)

    def _retrying(self, url: str, attempt_fn):
        """Run `attempt_fn(attempt)` until it returns, retrying transient failures."""
        attempts = max(1, self.options.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return attempt_fn(attempt)
            except urllib.error.HTTPError as e:
                if not _is_transient(e):
                    raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
                failure = f"HTTP {e.code} {e.reason}"
            except _Transient as e:
                failure = str(e)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                if not _is_transient(e):
                    raise FetchError(f"{url}: {_describe(e)}") from None
                failure = _describe(e)
            if attempt == attempts:
                raise FetchError(f"{url}: {failure} (gave up after {attempts} attempts)")
            delay = self.options.backoff * 2 ** (attempt - 1)
            self.stream.write(f"ops-onboard: {url}: {failure}; retrying in {delay:g}s ({attempt + 1}/{attempts})\n")
            self.stream.flush()
            self.sleep(delay)
        raise AssertionError("unreachable")

    def get_bytes(self, url: str, limit: int) -> tuple[bytes, str]:
        """The whole body of a small resource and the URL it came from (after redirects)."""

        def attempt(_n: int) -> tuple[bytes, str]:
            with self._open(url, {}) as resp:
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise FetchError(f"{url}: {int(length)} bytes, more than the {limit} expected")
                data = resp.read(limit + 1)
                if len(data) > limit:
                    raise FetchError(f"{url}: more than the {limit} bytes expected")
                if length is not None and length.isdigit() and len(data) < int(length):
                    raise _Transient(f"connection closed after {len(data)} of {length} bytes (truncated)")
                return data, resp.geturl()

        return self._retrying(url, attempt)

    def fetch_to(self, url: str, dest: Path, make_check: Callable[[], Check], what: str) -> None:
        """Download `url` into the new file `dest` through a check; `dest` is removed on failure."""
        state = _Download(make_check())
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        out = os.fdopen(fd, "r+b", buffering=0)
        try:
            with out:

                def attempt(_n: int) -> None:
                    headers = {"Range": f"bytes={state.done}-"} if state.done else {}
                    with self._open(url, headers) as resp:
                        resumed = state.done > 0 and resp.status == 206 and (
                            resp.headers.get("Content-Range", "").startswith(f"bytes {state.done}-")
                        )
                        if not resumed and resp.status != 200:
                            raise _Transient(f"unexpected HTTP {resp.status} {resp.reason}")
                        if state.done and not resumed:
                            # The server ignored the range and sends the whole file: start over.
                            out.seek(0)
                            out.truncate()
                            state.check, state.done = make_check(), 0
                        length = resp.headers.get("Content-Length")
                        total = state.done + int(length) if length and length.isdigit() else None
                        with Progress(what, total, stream=self.stream, delay=0, interval=0.1, leave=True, start=state.done,
                                      shown=self._show_progress(total)) as progress:

                            def on_chunk(n: int) -> None:
                                state.done += n
                                progress.advance(n)

                            copy_verified(resp.readinto, out, state.check, on_chunk)
                        # http.client's readinto ends quietly when the connection closes early.
                        if total is not None and state.done < total:
                            raise _Transient(f"connection closed after {state.done} of {total} bytes (truncated)")

                self._retrying(url, attempt)
                state.check.finish()
                os.fchmod(out.fileno(), 0o644)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


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
        self._fetched: list[str] = []

    def describe(self, rel: str) -> str:
        return self.base + urllib.parse.quote(rel)

    def read_pod_json(self, limit: int) -> bytes:
        data, final = self.fetcher.get_bytes(self.url, limit)
        self.base = base_url(final)  # relative to where pod.json really is, after redirects
        return data

    def read_small(self, rel: str, limit: int) -> bytes:
        return self.fetcher.get_bytes(self.describe(rel), limit)[0]

    def fetch(self, rel: str, dest: Path, make_check: Callable[[], Check]) -> None:
        self.fetcher.fetch_to(self.describe(rel), dest, make_check, rel)

    def close(self) -> None:
        pass
