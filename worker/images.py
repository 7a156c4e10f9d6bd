"""Job images: turn image fields (base64, data URI, https URL) into bytes, safely.

URLs are https-only and may not point at loopback, private, link-local or other reserved
addresses (checked on every redirect hop, by ``model_fetch.check_public_host``, the rule shared with model URLs
embedded in workflows) unless ``WORKER_ALLOW_HTTP_URLS`` /
``WORKER_ALLOW_PRIVATE_URLS`` allow it; every input is size-bounded; names are sanitised.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from urllib.parse import urljoin, urlsplit

import requests

from model_fetch import UrlRefused, check_public_host

from .config import WorkerSettings
from .errors import InvalidInput

# Any character ComfyUI's upload keeps, except path separators, a leading dot and control characters.
SAFE_NAME = re.compile(r"^(?!\.)[^/\\\x00-\x1f\x7f]{1,128}$")
NAME_RULE = "must be a file name: no '/' or '\\', no leading dot, no control characters, 1 to 128 characters"
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF", b"BM")
MAX_REDIRECTS = 5


def safe_name(name: object, field: str) -> str:
    """A file name: no path separator, no leading dot or space, no control character, at most 128 characters."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise InvalidInput(field, NAME_RULE)
    return name


def unique_name(name: str) -> str:
    """Prefix a job-unique token so concurrent jobs never overwrite each other's inputs."""
    return f"job-{uuid.uuid4().hex[:12]}-{name}"


def check_image_bytes(data: bytes, field: str) -> bytes:
    """The bytes of a whole, decodable image: decoded fully here, before anything runs (a truncated or
    corrupt file would otherwise reach ComfyUI, which may fill the gap silently)."""
    if not data:
        raise InvalidInput(field, "is empty")
    if not data.startswith(IMAGE_MAGIC) or (data.startswith(b"RIFF") and data[8:12] != b"WEBP"):
        raise InvalidInput(field, "is not a PNG, JPEG, WEBP, GIF or BMP image")
    decode_fully(data, field)
    return data


def decode_fully(data: bytes, field: str) -> None:
    """Decode every pixel of every frame with Pillow (not tolerating truncation); InvalidInput on failure."""
    import warnings

    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.verify()  # the container: chunk checksums, the end marker
            with Image.open(io.BytesIO(data)) as im:
                for frame in range(getattr(im, "n_frames", 1)):
                    im.seek(frame)
                    im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(field, f"has more than {Image.MAX_IMAGE_PIXELS} pixels") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, struct.error...
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise InvalidInput(field, f"is not a whole image: it is {reason} ({type(exc).__name__})") from None


def decode_base64(value: str, field: str, limit: int) -> bytes:
    if value.startswith("data:"):
        header, sep, value = value.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidInput(field, "data URI must be base64-encoded (data:image/png;base64,...)")
    value = re.sub(r"\s+", "", value)
    if len(value) > (limit * 4) // 3 + 8:
        raise InvalidInput(field, f"is larger than {limit // 1_000_000} MB")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "is neither valid base64, a data URI nor an https URL") from None


def check_url(url: str, field: str, settings: WorkerSettings) -> None:
    """Refuse non-https and internal destinations (resolving the host name)."""
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.allow_http_urls else ("https",)
    if parts.scheme not in allowed:
        raise InvalidInput(field, "URLs must use https" + (" or http" if settings.allow_http_urls else ""))
    if not parts.hostname:
        raise InvalidInput(field, "URL has no host")
    if settings.allow_private_urls:
        return
    try:
        check_public_host(parts.hostname, parts.port)
    except UrlRefused as exc:
        raise InvalidInput(field, str(exc)) from None


def fetch_url(url: str, field: str, settings: WorkerSettings) -> bytes:
    """GET with redirects followed by hand (each hop re-checked), bounded size and time."""
    with requests.Session() as session:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, field, settings)
            try:
                resp = session.get(url, stream=True, timeout=(10, settings.url_timeout), allow_redirects=False)
            except requests.RequestException as exc:
                raise InvalidInput(field, f"could not be downloaded ({type(exc).__name__})") from None
            with resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers.get("Location", ""))
                    continue
                if resp.status_code != 200:
                    raise InvalidInput(field, f"URL answered HTTP {resp.status_code}")
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > settings.max_input_bytes:
                    raise InvalidInput(field, f"is larger than {settings.max_input_bytes // 1_000_000} MB")
                data = bytearray()
                try:
                    for block in resp.iter_content(65536):
                        data += block
                        if len(data) > settings.max_input_bytes:
                            raise InvalidInput(field, f"is larger than {settings.max_input_bytes // 1_000_000} MB")
                except requests.RequestException as exc:
                    raise InvalidInput(field, f"download was interrupted ({type(exc).__name__})") from None
                return bytes(data)
        raise InvalidInput(field, "too many redirects")


def load_image(value: object, field: str, settings: WorkerSettings) -> bytes:
    """Bytes of an image given as base64, a data URI or an https URL."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a base64 string, a data URI or an https URL")
    if value.startswith(("https://", "http://")) or "://" in value[:16]:
        data = fetch_url(value, field, settings)
    else:
        data = decode_base64(value, field, settings.max_input_bytes)
        if len(data) > settings.max_input_bytes:
            raise InvalidInput(field, f"is larger than {settings.max_input_bytes // 1_000_000} MB")
    return check_image_bytes(data, field)
