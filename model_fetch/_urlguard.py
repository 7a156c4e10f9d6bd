"""Rules for URLs that come from untrusted input: job image URLs (worker) and model URLs embedded in workflows.

One place for the SSRF rule: a URL's host must resolve to public addresses only (no loopback,
private, link-local, multicast or reserved address) unless the caller allows private addresses.
Embedded model URLs add: https only, a host on ``MODEL_FETCH_ALLOWED_HOSTS`` (exact name or a
subdomain of it), and a file suffix ComfyUI loads without executing code.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from .errors import UrlRefused

__all__ = ["UrlRefused", "check_public_host", "check_embedded_url", "request_guard", "host_allowed"]

#: Suffixes an embedded URL may deliver into any folder: formats without code in them.
SAFE_SUFFIXES = (".safetensors", ".sft", ".gguf")
#: Pickle-based suffixes, only for folders whose ComfyUI loaders read them with torch.load(weights_only=True)
#: (comfy.utils.load_torch_file, always safe with torch >= 2.4).
PICKLE_SUFFIXES = (".pt", ".pth")
PICKLE_SAFE_FOLDERS = frozenset({"checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "clip_vision",
                                 "upscale_models", "embeddings", "controlnet"})


class HostUnresolved(UrlRefused):
    """The host name does not resolve (no DNS, no network): not a rule broken, a network failure."""

    def __init__(self, host: str) -> None:
        super().__init__(f"host {host!r} cannot be resolved")
        self.host = host


def check_public_host(host: str, port: int | None) -> None:
    """Refuse a host that does not resolve, or resolves to any non-public address."""
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise HostUnresolved(host) from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise UrlRefused(f"URL points at a non-public address ({ip}); refused")


def request_guard(allow_private: bool = False) -> Callable[[str], None]:
    """A check for each request and redirect target of a workflow source: https, public addresses.

    The allow-list applies to the URL the workflow names, not to where its host redirects (the Hub
    answers from CDN hosts)."""

    def guard(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise UrlRefused(f"only https:// URLs are fetched from workflows (got {parts.scheme or 'no'} scheme)")
        if not parts.hostname:
            raise UrlRefused("the URL has no host")
        if not allow_private:
            check_public_host(parts.hostname, parts.port)

    return guard


def check_literal_host(host: str) -> None:
    """Refuse a host that is a non-public IP literal or ``localhost``, without resolving anything (a name's
    addresses are checked when it is fetched, by ``request_guard``)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise UrlRefused("URL points at localhost; refused")
    try:
        ip = ipaddress.ip_address(name.strip("[]").split("%")[0])
    except ValueError:
        return
    if not ip.is_global or ip.is_multicast:
        raise UrlRefused(f"URL points at a non-public address ({ip}); refused")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


def check_embedded_url(url: object, name: str, directory: str, allowed: tuple[str, ...],
                       allow_private: bool = False) -> str:
    """The URL, when a model URL embedded in a workflow may be fetched; else UrlRefused naming the rule.
    No DNS: planning works offline; the host's addresses are checked when the file is fetched."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("the workflow gives no URL")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise UrlRefused(f"only https:// URLs are fetched from workflows (got {parts.scheme or 'no'} scheme)")
    if parts.username or parts.password:
        raise UrlRefused("URLs with credentials are not fetched from workflows")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if not host_allowed(parts.hostname, allowed):
        raise UrlRefused(f"host {parts.hostname!r} is not in MODEL_FETCH_ALLOWED_HOSTS ({', '.join(allowed) or 'empty'})")
    suffix = os.path.splitext(name)[1].lower()
    if suffix in PICKLE_SUFFIXES and directory not in PICKLE_SAFE_FOLDERS:
        raise UrlRefused(f"'{suffix}' files are fetched from workflows only into {', '.join(sorted(PICKLE_SAFE_FOLDERS))}")
    if suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise UrlRefused(f"only {', '.join(SAFE_SUFFIXES + PICKLE_SUFFIXES)} files are fetched from workflows")
    if not allow_private:
        check_literal_host(parts.hostname)
    return url
