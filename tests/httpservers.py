"""Real HTTP servers on 127.0.0.1 serving a release root, for deploy-by-URL tests.

- `StaticServer`: Python's `http.server` (symlinks followed), in a thread,
  recording every request, with faults that can be scheduled per file:
  `"500"` (or `"503"`, `"404"`), `"truncate"` (full Content-Length, half the body, then the
  connection closes), `"corrupt"` (one byte flipped), `"stall"` (no answer
  for a while). Faults are consumed one per request; `always=` repeats one.
  `ranges=True` makes it honour `Range: bytes=N-` (206), like nginx.
  Hostile faults, a server that means harm: `"endless"` (no Content-Length,
  zeros without end), `"endless-length"` (a Content-Length of a terabyte, zeros
  without end), `"endless-chunked"` (chunked transfer encoding, chunks of zeros
  without end), `"trickle"` (the right headers, then one byte a second),
  `"trickle-headers"` (the status line, then one byte of headers a second),
  `"longer"` (no Content-Length, the file and then a MiB more), `"wrong-length"`
  (the file, with a Content-Length one byte more than it), `"shorter"` (the
  file without its last byte, Content-Length saying so), `"redirect"` (302 to
  the same path under `redirect_to`, another host). `hold(a, until=b)` answers
  `a` only once `b` was asked for: only a client fetching both at once passes.
- `Nginx`: Debian's nginx-light as the current user, `daemon off`, with a
  config, pid, logs and temp paths under a directory the test owns.
"""

from __future__ import annotations

import grp
import http.server
import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
from functools import partial
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        for suffix, requested in self.server.requested.items():
            if self.path.endswith(suffix):
                requested.set()
        for suffix, other in self.server.holds.items():
            if self.path.endswith(suffix) and not self.server.requested[other].wait(self.server.hold_seconds):
                self.send_error(503, f"{other} was not asked for meanwhile")
                return
        fault = self.server.next_fault(self.path)
        if fault in ("404", "500", "503"):
            self.send_error(int(fault), "Injected failure")
            return
        if fault == "stall":
            time.sleep(self.server.stall_seconds)
            self.close_connection = True
            return
        if fault in HOSTILE:
            self.close_connection = True
            try:
                HOSTILE[fault](self)
            except OSError:
                pass  # the client gave up: what a hostile server wants to cost it is bounded
            return
        path = self.translate_path(self.path)
        if fault is None and not self.server.ranges:
            return super().do_GET()
        if not os.path.isfile(path):
            return super().do_GET()
        data = Path(path).read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if self.server.ranges and match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        self.wfile.write(body)


def _file(handler: _Handler) -> bytes:
    return Path(handler.translate_path(handler.path)).read_bytes()


def _head(handler: _Handler, length: int | None, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    handler.wfile.flush()


def _zeros_forever(handler: _Handler) -> None:
    block = bytes(1 << 20)
    while not handler.server.closing.is_set():
        handler.wfile.write(block)


def _endless(handler: _Handler) -> None:
    _head(handler, None)
    _zeros_forever(handler)


def _endless_chunked(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"%x\r\n" % (1 << 16) + bytes(1 << 16) + b"\r\n"
    while not handler.server.closing.is_set():
        handler.wfile.write(chunk)


def _endless_length(handler: _Handler) -> None:
    _head(handler, 1 << 40)
    _zeros_forever(handler)


def _trickle(handler: _Handler) -> None:
    body = _file(handler)
    _head(handler, len(body))
    for i in range(len(body)):
        handler.wfile.write(body[i:i + 1])
        handler.wfile.flush()
        if handler.server.closing.wait(1.0):
            return


def _trickle_headers(handler: _Handler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not handler.server.closing.wait(1.0):
        handler.wfile.write(b"a")
        handler.wfile.flush()


def _longer(handler: _Handler) -> None:
    _head(handler, None)
    handler.wfile.write(_file(handler) + bytes(1 << 20))


def _wrong_length(handler: _Handler) -> None:
    body = _file(handler)
    _head(handler, len(body) + 1)
    handler.wfile.write(body)


def _shorter(handler: _Handler) -> None:
    body = _file(handler)[:-1]
    _head(handler, len(body))
    handler.wfile.write(body)


def _redirect(handler: _Handler) -> None:
    handler.send_response(302)
    old, new = handler.server.redirect_rewrite
    handler.send_header("Location", handler.server.redirect_to + handler.path.replace(old, new))
    handler.send_header("Content-Length", "0")
    handler.end_headers()


HOSTILE = {"endless": _endless, "endless-chunked": _endless_chunked, "endless-length": _endless_length, "trickle": _trickle,
           "trickle-headers": _trickle_headers, "longer": _longer, "wrong-length": _wrong_length,
           "shorter": _shorter, "redirect": _redirect}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, str | None]] = []
        self.faults: dict[str, list[str]] = {}
        self.always: dict[str, str] = {}
        self.ranges = False
        self.stall_seconds = 2.0
        self.redirect_to = ""
        self.redirect_rewrite = ("", "")
        self.closing = threading.Event()  # hostile handlers stop when the server does
        self.holds: dict[str, str] = {}  # suffix -> the suffix whose request it waits for
        self.requested: dict[str, threading.Event] = {}
        self.hold_seconds = 10.0
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass  # injected faults break connections on purpose

    def next_fault(self, path: str) -> str | None:
        with self.lock:
            for suffix, fault in self.always.items():
                if path.endswith(suffix):
                    return fault
            for suffix, queue in self.faults.items():
                if path.endswith(suffix) and queue:
                    return queue.pop(0)
        return None


class StaticServer:
    """`http.server` on a free port of 127.0.0.1, serving `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.httpd = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.httpd.requests

    def paths(self) -> list[str]:
        return [path for path, _range in self.httpd.requests]

    def fail(self, suffix: str, *faults: str) -> None:
        """The next requests of a path ending in `suffix` get these faults, in order."""
        self.httpd.faults.setdefault(suffix, []).extend(faults)

    def always(self, suffix: str, fault: str) -> None:
        self.httpd.always[suffix] = fault

    def hold(self, suffix: str, until: str) -> None:
        """Answer a path ending in `suffix` only once one ending in `until` was asked for
        (503 after `hold_seconds`): passes only if a client fetches both at the same time."""
        self.httpd.requested[until] = threading.Event()
        self.httpd.holds[suffix] = until

    def honour_ranges(self, on: bool = True) -> None:
        self.httpd.ranges = on

    def redirect_to(self, base_url: str, rewrite: tuple[str, str] = ("", "")) -> None:
        """Where a `"redirect"` fault sends the client: the same path under `base_url`,
        its first `rewrite[0]` replaced by `rewrite[1]`."""
        self.httpd.redirect_to = base_url
        self.httpd.redirect_rewrite = rewrite

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        disable_symlinks off;
    }}
}}
"""


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


class Nginx:
    """nginx serving `root` on a free port, everything it writes under `work`."""

    def __init__(self, root: Path, work: Path):
        self.root = root
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        log = self.work / "access.log"
        return log.read_text() if log.exists() else ""

    def __enter__(self) -> Nginx:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        user = ""
        if os.geteuid() == 0:  # workers would switch to nobody: stay the current user
            user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, work=self.work, port=self.port, root=self.root))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(self.work / "stderr.log", "wb") as stderr:  # nginx holds its own copy
            self.proc = subprocess.Popen(
                [binary, "-c", str(conf), "-p", str(self.work), "-e", str(self.work / "error.log")],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
