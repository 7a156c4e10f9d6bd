"""Is a source's host there at all? A name that does not resolve, a refused connection or a server that
accepts but never answers within ``MODEL_FETCH_FIRST_BYTE_TIMEOUT`` fails a source's first request at once
(``host_unreachable``), naming the host and what to do, instead of being retried like a dropped connection.
Later requests of a download keep their retries: a server that answered once is worth waiting for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from .errors import HostUnreachable

log = logging.getLogger(__name__)
WAITING_AFTER = 3.0  # seconds of silence before the waiting line
_RESOLVE = ("name or service not known", "temporary failure in name resolution", "nodename nor servname",
            "no address associated", "name resolution", "getaddrinfo failed")
_REFUSED = ("connection refused", "refused")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (cause, context, urllib3's ``reason``, exception arguments)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]


def why_unreachable(exc: BaseException) -> str | None:
    """"does not resolve", "refused the connection", "did not answer", or None (a failure worth a retry)."""
    for e in _chain(exc):
        text = str(e).lower()
        if isinstance(e, socket.gaierror) or "NameResolution" in type(e).__name__ or any(s in text for s in _RESOLVE):
            return "does not resolve"
        if isinstance(e, ConnectionRefusedError) or any(s in text for s in _REFUSED):
            return "refused the connection"
    for e in _chain(exc):
        if "Timeout" in type(e).__name__ or isinstance(e, (TimeoutError, socket.timeout)):
            return "did not answer"
    return None


def unreachable(url: str, why: str, timeout: float, hub: bool) -> HostUnreachable:
    """The error for a host that ``why``; the advice fits a Hugging Face source (``hub``) or any other."""
    host = urlsplit(url).hostname or url
    what = f"{host} {why}"
    if why == "did not answer":
        what += f" within {timeout:g}s (MODEL_FETCH_FIRST_BYTE_TIMEOUT)"
    advice = ("set HF_ENDPOINT to a Hub mirror you can reach, " if hub else "") + \
        "use --offline (HF_HUB_OFFLINE=1) with the files already in place, or a manifest (--manifest) whose " \
        "entries list reachable mirrors"
    return HostUnreachable(f"{what}: {advice}")


@contextlib.contextmanager
def waiting_line(label: str, timeout: float) -> Iterator[None]:
    """Log one line if the first answer of ``label`` takes longer than a few seconds."""
    timer = threading.Timer(WAITING_AFTER, lambda: log.warning(
        "waiting for %s to answer (gives up after %gs, MODEL_FETCH_FIRST_BYTE_TIMEOUT)", label, timeout))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


__all__ = ["why_unreachable", "unreachable", "waiting_line"]
