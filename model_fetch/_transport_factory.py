"""Which transport reads a URL: the one place that knows every source scheme.

Kept apart from ``_transports.py`` (the base classes) so that ``_hf.py`` and ``_s3.py`` import the
base and nothing imports back. S3 (boto3) is imported only when an ``s3://`` URL needs it.
"""

from __future__ import annotations

from .config import Settings
from .errors import ManifestError
from ._hf import HfTransport, parse_hf_url
from ._transports import FileTransport, HttpTransport, Transport

__all__ = ["transport_for"]


def transport_for(url: str, settings: Settings) -> Transport:
    """The transport that reads ``url``: s3://, file://, Hugging Face, plain http(s)."""
    if url.startswith("s3://"):
        from ._s3 import S3Transport  # boto3: only for S3 sources

        return S3Transport(url, settings)
    if url.startswith("file://"):
        return FileTransport(url)
    hf_file = parse_hf_url(url, settings.hf_endpoint)
    if hf_file is not None:
        return HfTransport(hf_file, settings)
    if url.startswith(("http://", "https://")):
        return HttpTransport(url, settings)
    raise ManifestError(url, "unsupported source scheme")
