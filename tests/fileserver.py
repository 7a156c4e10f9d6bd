"""A real HTTP/1.1 file server on loopback with fault injection, for downloader tests and benchmarks.

    with FileServer(tmp_path, rate_limit=50 << 20) as server:
        server.faults.add("/big.bin", Fault.RESET_MID_BODY, after_bytes=1 << 20, times=1)
        requests.get(f"{server.url}/big.bin", headers={"Range": "bytes=0-99"})

Bodies go out with ``os.sendfile`` in large chunks (paced by a per-connection token bucket when a rate
limit is set). Besides ``url`` (``http://127.0.0.1:PORT``) the server listens on ``alt_url``
(``http://127.0.0.2:PORT``, same port) so cross-host redirects can be tested; with ``tls`` (an ``ssl.SSLContext``, see ``tests/tls.py``) both
are ``https://``. A Hugging Face-like
``resolve`` endpoint (see :meth:`FileServer.add_hf_file`) redirects to ``/cdn/<sha256>``, on ``alt_url``
unless ``hf_cdn_cross_host`` is False. Traffic is in ``server.counters`` (:class:`Counters`), faults in
``server.faults`` (:class:`FaultSet`); ``make_file`` writes deterministic test data quickly.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import http.server
import json
import logging
import os
import re
import socket
import stat
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.fileserver_faults import (BodyPlan, Counters, Fault, FaultRule, FaultSet, HfFile, HubRegistry,
                                     RequestInfo, RequestRecord, parse_range)

__all__ = ["FileServer", "Fault", "FaultRule", "FaultSet", "Counters", "RequestInfo", "RequestRecord", "HfFile",
           "HubRegistry", "make_file", "sha256_file"]

log = logging.getLogger(__name__)

SENDFILE_CHUNK = 16 << 20
_INVERT = bytes(255 - i for i in range(256))
_HEX40 = re.compile(r"[0-9a-f]{40}")


def make_file(path: Path, size: int, seed: int = 0) -> str:
    """Write ``size`` deterministic pseudo-random bytes to ``path`` and return their sha256 (about 2 s per GiB).

    The bytes are numpy's PCG64 raw stream (stable across numpy versions), so no block repeats and a range
    written at the wrong offset always shows. Hashing and writing a block overlap with generating the next.
    """
    import numpy as np

    gen, digest = np.random.PCG64(seed), hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)

    def consume(block: memoryview) -> None:
        digest.update(block)
        f.write(block)

    with open(path, "wb") as f, ThreadPoolExecutor(1) as pool:
        pending, left = None, size
        while left:
            n = min(left, 32 << 20)
            block = memoryview(gen.random_raw((n + 7) // 8).astype("<u8", copy=False)).cast("B")[:n]
            left -= n
            if pending is not None:
                pending.result()
            pending = pool.submit(consume, block)
        if pending is not None:
            pending.result()
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _Abort(Exception):
    """Raised inside a handler after the connection was torn down on purpose."""


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, owner: FileServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)
        if owner.tls is not None:  # accepted connections are TLS (handshake on accept)
            self.socket = owner.tls.wrap_socket(self.socket, server_side=True)

    def server_bind(self) -> None:  # skip HTTPServer's getfqdn (a DNS lookup)
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        level = logging.DEBUG if isinstance(sys.exc_info()[1], OSError) else logging.ERROR
        log.log(level, "connection from %s ended with an error", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FileServer/1.0"
    server: _HTTPServer

    # -- connection lifecycle -------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle/delayed-ACK 40 ms stalls
        self.owner = self.server.owner
        self.tokens, self.stamp = 0.0, time.monotonic()
        self.record: RequestRecord | None = None
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: str | None = None) -> None:
        if self.record is not None:
            self.record.status = code
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and stop handling it."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(self.connection.detach())
        except OSError:
            pass
        raise _Abort

    # -- request handling -----------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        segments = [unquote(s) for s in split.path.split("/")] if split.path.startswith("/") else [""]
        req = RequestInfo(self.command, "/".join(segments), split.query, self.headers.get("Host", ""), self.headers)
        self.record = self.owner.counters.begin(RequestRecord(req.method, req.path, req.host, req.authorization,
                                                              req.range))
        try:
            self._respond(req, segments[1:], head)
        except _Abort:
            pass
        except OSError as exc:
            log.debug("client went away during %s %s: %s", req.method, req.path, exc)
            self.close_connection = True
        finally:
            self.record = None
            self.owner.counters.end()

    def _respond(self, req: RequestInfo, segments: list[str], head: bool) -> None:
        owner = self.owner
        current = f"http://{req.host}{self.path}"
        plan = owner.faults.header_plan(req, current, lambda rule: owner._redirect_target(rule, req))
        self._note(plan.fired)
        if plan.delay and owner._stopping.wait(plan.delay):
            self._reset()
        if plan.reply is not None:
            return self._fault_reply(plan.reply, req, head)
        if not segments:
            return self._reply(400, b"bad request target\n", head=head)
        if segments[0] == "cdn" and len(segments) == 2 and segments[1] in owner.hub.blobs:
            # huggingface_hub follows a same-host redirect on HEAD and then reads X-Repo-Commit from this reply
            commit = parse_qs(req.query).get("commit", [""])[0]
            extra = [("X-Repo-Commit", commit)] if _HEX40.fullmatch(commit) else []
            return self._serve_file(req, owner.hub.blobs[segments[1]], head, f'"{segments[1]}"', extra, confined=False)
        if segments[0] == "api" and len(segments) > 2 and segments[1] in ("models", "datasets", "spaces"):
            return self._hf_api(req, segments[1][:-1], segments[2:], head)
        hf = owner.hub.parse_resolve(segments)
        if hf is not None:
            return self._hf_resolve(req, *hf, head=head)
        if "\0" in req.path or any(s in ("..", ".") or "/" in s or "\\" in s for s in segments):
            return self._reply(403, b"forbidden path\n", head=head)
        return self._serve_file(req, owner.root.joinpath(*segments), head)

    def _note(self, rules: list[FaultRule]) -> None:
        if self.record is not None:
            self.record.faults.extend(rule.mode.value for rule in rules)

    def _reply(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
               head: bool = False, content_type: str = "text/plain") -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _fault_reply(self, rule: FaultRule, req: RequestInfo, head: bool) -> None:
        if rule.mode is Fault.REQUIRE_AUTH:
            return self._reply(401, b"unauthorized\n", [("WWW-Authenticate", 'Bearer realm="fileserver"'),
                                                         ("X-Error-Message", "Invalid credentials")], head)
        if rule.mode is Fault.REDIRECT:
            return self._reply(int(rule.status), headers=[("Location", self.owner._redirect_target(rule, req))],
                               head=head)
        headers = [] if rule.retry_after is None else [("Retry-After", str(rule.retry_after))]
        return self._reply(int(rule.status), f"injected {rule.status}\n".encode(), headers, head)

    def _serve_file(self, req: RequestInfo, path: Path, head: bool, etag: str | None = None,
                    extra: list[tuple[str, str]] | None = None, confined: bool = True) -> None:
        """Serve a regular file with Range support; ``confined``: refuse paths resolving outside the root."""
        owner = self.owner
        try:
            if confined and not path.resolve().is_relative_to(owner._root_resolved):
                return self._reply(403, b"forbidden path\n", head=head)
            f = open(path, "rb")
        except OSError:
            return self._reply(404, b"not found\n", head=head)
        with f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return self._reply(404, b"not found\n", head=head)
            size = st.st_size
            etag = etag or f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            rng = parse_range(req.range, size)
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range not in (etag, modified):
                rng = None
            if isinstance(rng, tuple):
                owner.counters.add_range(req.path, *rng)
            headers = [("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", modified), *(extra or [])]
            if rng == "unsatisfiable":
                return self._reply(416, b"range not satisfiable\n", [*headers, ("Content-Range", f"bytes */{size}")],
                                   head)
            ignored = owner.faults.take_ignore_range(req) if rng is not None else []
            if ignored:
                self._note(ignored)
                rng = None
            first, last = rng if isinstance(rng, tuple) else (0, size - 1)
            length = last - first + 1
            self.send_response(206 if rng else 200)
            for name, value in headers:
                self.send_header(name, value)
            if rng:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if head or not length:
                return
            plan = owner.faults.body_plan(req, first, length)
            self._note(plan.fired)
            self._send_body(f, req.path, first, length, plan)

    # -- body -------------------------------------------------------------------------------------
    def _send_body(self, f: Any, path: str, start: int, length: int, plan: BodyPlan) -> None:
        pos, stalled = 0, False
        for bound in plan.boundaries(length):
            if bound > pos:
                self._emit(f, path, start + pos, bound - pos, plan.corrupted(pos))
                pos = bound
            if plan.stall is not None and pos == plan.stall[0] and not stalled:
                stalled = True
                if self.owner._stopping.wait(plan.stall[1]):
                    self._reset()
            if plan.cut is not None and pos == plan.cut[0]:
                if plan.cut[1] is Fault.RESET_MID_BODY:
                    self._reset()
                self.close_connection = True  # TRUNCATE: a clean FIN before Content-Length is reached
                return

    def _emit(self, f: Any, path: str, offset: int, count: int, corrupt: bool) -> None:
        """Send ``count`` file bytes from ``offset`` (flipped if ``corrupt``), paced by the rate limit."""
        out, fd, end = self.connection.fileno(), f.fileno(), offset + count
        while offset < end:
            if self.owner._stopping.is_set():
                self._reset()
            rate = self.owner.rate_limit
            n = min(end - offset, SENDFILE_CHUNK if not rate else max(4096, min(256 << 10, int(rate) // 100)))
            if rate:
                self._throttle(n, rate)
            self.owner.counters.add_bytes(path, n)  # before the bytes can reach the client; corrected below
            sent = 0
            try:
                if corrupt or self.owner.tls is not None:  # sendfile would bypass TLS
                    data = os.pread(fd, n, offset)
                    self.connection.sendall(data.translate(_INVERT) if corrupt else data)
                    sent = n
                else:
                    sent = os.sendfile(out, fd, offset, n)
                    if sent == 0:
                        raise ConnectionError("sendfile sent nothing")
            finally:
                if sent != n:
                    self.owner.counters.add_bytes(path, sent - n)
            offset += sent

    def _throttle(self, n: int, rate: int) -> None:
        """Token bucket: at most ``rate`` bytes/s on this connection, bursts up to 50 ms worth."""
        now = time.monotonic()
        self.tokens = min(self.tokens + (now - self.stamp) * rate, max(rate * 0.05, n)) - n
        self.stamp = now
        if self.tokens < 0 and self.owner._stopping.wait(-self.tokens / rate):
            self._reset()

    # -- Hugging Face -----------------------------------------------------------------------------
    def _hf_resolve(self, req: RequestInfo, repo_type: str, repo_id: str, revision: str, filename: str,
                    head: bool) -> None:
        hub = self.owner.hub
        error = hub.check(req.authorization, repo_type, repo_id, revision)
        if error is not None:
            return self._reply(*error, head=head)
        files = hub.repos[(repo_type, repo_id)][revision]
        entry, commit = files.get(filename), next(iter(files.values())).commit
        if entry is None:
            return self._reply(404, b"Entry not found\n", [("X-Error-Code", "EntryNotFound"),
                                                           ("X-Repo-Commit", commit)], head)
        if not entry.lfs:
            return self._serve_file(req, entry.local_path, head, f'"{entry.blob_id}"', [("X-Repo-Commit", commit)],
                                    confined=False)
        base = self.owner.alt_url if self.owner.hf_cdn_cross_host else self.owner.url
        self._reply(302, headers=[
            ("Location", f"{base}{entry.cdn_path}?commit={entry.commit}"), ("X-Repo-Commit", entry.commit),
            ("X-Linked-Etag", f'"{entry.sha256}"'), ("X-Linked-Size", str(entry.size)),
            ("ETag", f'"{entry.sha256}"'), ("Accept-Ranges", "bytes")], head=head)

    def _hf_api(self, req: RequestInfo, repo_type: str, rest: list[str], head: bool) -> None:
        """``/api/models/{repo_id}[/revision/{rev}]`` (repo info) and ``.../tree/{rev}[/{dir}]`` (file list)."""
        i = next((k for k in (1, 2) if k < len(rest) and rest[k] in ("revision", "tree")), len(rest))
        repo_id, kind = "/".join(rest[:i]), rest[i] if i < len(rest) else "revision"
        revision = rest[i + 1] if i + 1 < len(rest) else "main"
        error = self.owner.hub.check(req.authorization, repo_type, repo_id, revision)
        if error is not None:
            return self._reply(*error, head=head)
        if kind == "tree":
            data: Any = self.owner.hub.tree(repo_type, repo_id, revision, "/".join(rest[i + 2:]))
        else:
            data = self.owner.hub.api_info(repo_type, repo_id, revision)
        self._reply(200, json.dumps(data).encode(), head=head, content_type="application/json")


class FileServer:
    """Threaded HTTP/1.1 file server for ``root`` on ``host`` (and on ``alt_host``, same port)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, rate_limit: int | None = None,
                 alt_host: str = "127.0.0.2", tls: Any = None) -> None:
        self.root = Path(root)
        self._root_resolved = self.root.resolve()
        self.host, self.port, self.alt_host = host, port, alt_host
        self.rate_limit = rate_limit  # bytes/s per connection; None or 0: unlimited; changeable at any time
        self.tls = tls  # an ssl.SSLContext (server side): serve https (see tests/tls.py)
        self.faults = FaultSet()
        self.counters = Counters()
        self.hf_cdn_cross_host = True  # redirect resolve URLs to the CDN on alt_url (else on url)
        self.hub = HubRegistry()
        self._servers: list[_HTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._conn_lock = threading.Condition()
        self._connections: set[socket.socket] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FileServer:
        self._stopping.clear()
        for attempt in range(20):
            primary = _HTTPServer(self, (self.host, self.port))
            port = primary.server_address[1]
            try:
                own_listener = self.alt_host not in (self.host, "localhost")
                alt = _HTTPServer(self, (self.alt_host, port)) if own_listener else None
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # cannot listen there: fall back to a name for this host
                    log.warning("cannot listen on %s; alt_url uses localhost", self.alt_host)
                    self.alt_host, alt = "localhost", None
                    break
                primary.server_close()
                if self.port == 0 and attempt < 19 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            break
        self.port = port
        self._servers = [primary, *([alt] if alt else [])]
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                      name=f"fileserver-{server.server_address[0]}:{port}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.debug("serving %s on %s and %s", self.root, self.url, self.alt_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, tear down open connections (stalled ones included) and wait for handlers."""
        self._stopping.set()
        closers = [threading.Thread(target=server.shutdown) for server in self._servers]
        for closer in closers:  # in parallel: each waits for its serve_forever poll
            closer.start()
        for closer, server in zip(closers, self._servers):
            closer.join()
            server.server_close()
        with self._conn_lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conn_lock.wait_for(lambda: not self._connections, timeout)
        for thread in self._threads:
            thread.join(timeout)
        self._servers, self._threads = [], []

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._conn_lock:
            if opened:
                self._connections.add(conn)
                self.counters.opened()
            else:
                self._connections.discard(conn)
                self.counters.closed()
                self._conn_lock.notify_all()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def alt_url(self) -> str:
        """Same server under another host name, for cross-host redirects."""
        return f"{self.scheme}://{self.alt_host}:{self.port}"

    def reset_counters(self) -> None:
        self.counters.reset()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered (keep-alive connections may stay open)."""
        return self.counters.wait_idle(timeout)

    def _redirect_target(self, rule: FaultRule, req: RequestInfo) -> str:
        to = rule.to or req.path + (f"?{req.query}" if req.query else "")
        if to.startswith(("http://", "https://")):
            return to
        return f"{self.alt_url if rule.cross_host else self.url}{quote(to, safe='/?=&%')}"

    # -- Hugging Face -----------------------------------------------------------------------------
    def add_hf_file(self, repo_id: str, filename: str, local_path: Path, revision: str = "main", *,
                    repo_type: str = "model", lfs: bool = True, token: str | None = None,
                    sha256: str | None = None) -> HfFile:
        """Publish ``local_path`` as ``filename`` of ``repo_id`` at ``revision`` (and at its fake commit).

        ``token`` makes the repo private: resolve and API calls then need ``Authorization: Bearer <token>``
        (the CDN never does). LFS files redirect to ``/cdn/<sha256>``; others are served in place.
        """
        local_path = Path(local_path)
        return self.hub.add(repo_id, filename, local_path, revision, repo_type, lfs, token,
                            sha256 or sha256_file(local_path))
