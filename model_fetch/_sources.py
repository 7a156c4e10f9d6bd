"""Which transport reads a source URL: s3://, file://, Hugging Face, plain http(s)."""

from __future__ import annotations

from .config import Settings
from .errors import ManifestError
from ._hf import HfTransport, parse_hf_url
from ._transports import FileTransport, HttpTransport, Transport


def is_network(url: str) -> bool:
    """False only for ``file://`` sources, which offline mode may still use."""
    return not url.startswith("file://")


def transport_for(url: str, settings: Settings) -> Transport:
    if url.startswith("s3://"):
        from ._s3 import S3Transport

        return S3Transport(url, settings)
    if url.startswith("file://"):
        return FileTransport(url)
    hf_file = parse_hf_url(url, settings.hf_endpoint)
    if hf_file is not None:
        return HfTransport(hf_file, settings)
    if url.startswith(("http://", "https://")):
        return HttpTransport(url, settings)
    raise ManifestError(url, "unsupported source scheme")
