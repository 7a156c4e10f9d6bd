"""Byte sources the engine reads ranges from: HTTP(S) and ``file://`` here; Hugging Face in ``_hf.py``, S3 in ``_s3.py``;
``_transport_factory.transport_for`` picks one for a URL (so this base module imports neither).

A transport answers ``probe()`` (size, range support, identity, declared sha256) and
``read(start, end)`` (an iterator of byte blocks). It raises ``Transient`` for what a retry may
fix (connection errors, 408/429/5xx, short bodies, stalls) and ``SourceNotFound`` for what it
will not (404, 401/403), or ``RangeIgnored`` when a server answers a range with the whole body.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests

from .config import Settings
from ._reach import unreachable, why_unreachable
from .errors import SourceNotFound

log = logging.getLogger(__name__)
BLOCK = 1024 * 1024
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
GONE_STATUS = {401, 403, 404, 410}


class Transient(Exception):
    """A failure worth retrying; ``retry_after`` in seconds when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RangeIgnored(Exception):
    """The server answered a range request with the whole object (200)."""


@dataclass(frozen=True)
class Probe:
    size: int | None
    ranges: bool
    identity: str  # what must stay equal for a partial download to be resumed
    sha256: str | None = None


class Transport(Protocol):
    """``read`` may yield views of a reused buffer: each block is valid until the next one is asked for."""

    label: str

    def probe(self) -> Probe: ...

    def read(self, start: int, end: int | None) -> Iterator[bytes | memoryview]: ...


def redact(url: str) -> str:
    """A URL safe for logs: no credentials, no query string (signatures, tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpTransport:
    """Plain HTTP(S) with one session per thread, explicit timeouts, auth kept to the origin host."""

    def __init__(self, url: str, settings: Settings, headers: dict[str, str] | None = None,
                 sha256: str | None = None, label: str | None = None) -> None:
        self.url = url
        self.resolved = url  # after redirects, reused by chunk requests
        self.settings = settings
        self.headers = dict(headers or {})
        self.declared_sha256 = sha256
        self.label = label or redact(url)
        self._local = threading.local()
        self._origin_host = urlsplit(url).netloc

    def _buffer(self) -> memoryview:
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = memoryview(bytearray(BLOCK))
        return buf

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if self.settings.url_guard is not None:
                s.hooks["response"].append(self._check_redirect)
            self._local.session = s
        return s

    def _check_redirect(self, resp: requests.Response, *args: object, **kwargs: object) -> None:
        """Apply ``settings.url_guard`` to a redirect target before it is followed (untrusted sources)."""
        guard = self.settings.url_guard
        if resp.is_redirect and guard is not None:
            from ._urlguard import UrlRefused

            target = urljoin(resp.url, resp.headers.get("Location", ""))
            try:
                guard(target)
            except UrlRefused as exc:
                resp.close()
                raise SourceNotFound(f"{self.label} redirects to {redact(target)}, refused: {exc}") from None

    def _headers_for(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        # credentials go only to the host they were meant for (requests also strips them on redirects)
        same = urlsplit(url).netloc == self._origin_host
        return {**(self.headers if same else {}), **extra, "Accept-Encoding": "identity"}

    def _get(self, extra: dict[str, str], first: bool = False) -> requests.Response:
        """One GET; ``first`` (the probe): a host that is not there fails at once (``host_unreachable``)."""
        url = self.resolved
        read_timeout = self.settings.first_byte_timeout if first else self.settings.stall_timeout
        try:
            resp = self.session().get(url, headers=self._headers_for(url, extra), stream=True,
                                      timeout=(self.settings.connect_timeout, read_timeout))
        except requests.RequestException as exc:
            why = why_unreachable(exc) if first else None
            if why:
                raise unreachable(url, why, read_timeout, hub=False) from None
            raise Transient(f"{type(exc).__name__} from {self.label}") from None
        if resp.status_code in RETRY_STATUS:
            resp.close()
            raise Transient(f"HTTP {resp.status_code} from {self.label}", retry_after_seconds(resp.headers.get("Retry-After")))
        if resp.status_code in GONE_STATUS:
            resp.close()
            if self.resolved != self.url and resp.status_code in (403, 410):
                self.resolved = self.url  # an expired signed redirect: resolve again next time
                raise Transient(f"HTTP {resp.status_code} from the redirect target of {self.label}")
            raise SourceNotFound(f"{self.label} answered HTTP {resp.status_code}"
                                 + (" (check the token / access rights)" if resp.status_code in (401, 403) else ""))
        if resp.status_code >= 400:
            resp.close()
            raise SourceNotFound(f"{self.label} answered HTTP {resp.status_code}")
        if resp.history:
            self.resolved = resp.url
        return resp

    def probe(self) -> Probe:
        resp = self._get({"Range": "bytes=0-0"}, first=True)
        try:
            etag = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
            if resp.status_code == 206:
                total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
                size = int(total) if total.isdigit() else None
                return Probe(size=size, ranges=size is not None, identity=f"{etag}|{size}", sha256=self.declared_sha256)
            length = resp.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            return Probe(size=size, ranges=False, identity=f"{etag}|{size}", sha256=self.declared_sha256)
        finally:
            resp.close()

    def read(self, start: int, end: int | None) -> Iterator[bytes | memoryview]:
        """Bytes ``start..end`` inclusive (``end=None``: to the end of the object)."""
        return self._range(start, end, None)

    def read_into(self, start: int, end: int, target: memoryview) -> Iterator[int]:
        """Bytes ``start..end`` received straight into ``target`` (e.g. an mmap of the .part); yields counts."""
        return (len(view) for view in self._range(start, end, target))

    def _range(self, start: int, end: int | None, target: memoryview | None) -> Iterator[memoryview | bytes]:
        ranged = not (start == 0 and end is None)
        resp = self._get({"Range": f"bytes={start}-{'' if end is None else end}"} if ranged else {})
        with resp:
            if ranged and resp.status_code == 200:
                raise RangeIgnored(f"{self.label} ignored a Range request")
            if ranged:
                want = (resp.headers.get("Content-Range") or "").partition(" ")[2].partition("/")[0]
                if end is not None and want != f"{start}-{end}":
                    raise Transient(f"{self.label} answered range {want!r} for {start}-{end}")
            expected = None if end is None else end - start + 1
            got = 0
            try:
                for block in self._body(resp, expected, target):
                    got += len(block)
                    if expected is not None and got > expected:
                        raise Transient(f"{self.label} sent more bytes than asked")
                    yield block
            except (requests.RequestException, http.client.HTTPException, OSError) as exc:
                raise Transient(f"{type(exc).__name__} while reading {self.label}") from None
            if expected is not None and got < expected:
                raise Transient(f"{self.label} ended early ({got} of {expected} bytes)")
            if expected is not None:
                keep_alive(resp)

    def _body(self, resp: requests.Response, expected: int | None,
              target: memoryview | None) -> Iterator[memoryview | bytes]:
        """Body blocks, read from the socket straight into ``target`` (consecutive views of it) or into this
        thread's reused buffer; urllib3's own reader only when the body is encoded."""
        fp = getattr(resp.raw, "_fp", None)
        off = 0
        if not isinstance(fp, http.client.HTTPResponse) or resp.raw.headers.get("Content-Encoding", "identity") != "identity":
            for block in resp.iter_content(BLOCK):
                if target is None:
                    yield block
                else:
                    target[off:off + len(block)] = block
                    yield target[off:off + len(block)]
                    off += len(block)
            return
        remaining = expected
        while remaining is None or remaining > 0:
            if target is None:
                buf = self._buffer()
                n = fp.readinto(buf if remaining is None else buf[: min(len(buf), remaining)])
                view = buf[:n]
            else:
                n = fp.readinto(target[off:off + (BLOCK if remaining is None else min(BLOCK, remaining))])
                view = target[off:off + n]
                off += n
            if not n:
                return
            if remaining is not None:
                remaining -= n
            yield view


def keep_alive(resp: requests.Response) -> None:
    """Hand a fully read response's connection back to the session's pool (requests would close it, the
    body having been read around it), so the next range reuses the TCP (and TLS) connection."""
    resp._content_consumed = True  # type: ignore[attr-defined]  # requests' private flag, absent from its stubs
    resp.raw.release_conn()


class FileTransport:
    """A read-only local or mounted mirror, ``file:///path``."""

    def __init__(self, url: str) -> None:
        self.path = Path(unquote(urlsplit(url).path))
        self.label = f"file://{self.path}"

    def probe(self) -> Probe:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SourceNotFound(f"{self.label} does not exist") from None
        except OSError as exc:
            raise Transient(f"{self.label}: {exc.strerror}") from None
        return Probe(size=st.st_size, ranges=True, identity=f"{st.st_size}|{st.st_mtime_ns}")

    def read(self, start: int, end: int | None) -> Iterator[bytes]:
        try:
            with open(self.path, "rb", buffering=0) as f:
                f.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    block = f.read(BLOCK if remaining is None else min(BLOCK, remaining))
                    if not block:
                        break
                    if remaining is not None:
                        remaining -= len(block)
                    yield block
                if remaining:
                    raise Transient(f"{self.label} is shorter than expected")
        except FileNotFoundError:
            raise SourceNotFound(f"{self.label} does not exist") from None
        except OSError as exc:
            raise Transient(f"{self.label}: {exc.strerror}") from None


def is_network(url: str) -> bool:
    """False only for ``file://`` sources, which offline mode may still use."""
    return not url.startswith("file://")
