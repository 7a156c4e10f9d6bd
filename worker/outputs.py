"""Deliver a job's output files: inline base64, or uploaded to a bucket with presigned GET URLs.

Presigned URLs are returned to the caller and never logged.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import OutputTooLarge, OutputUploadFailed

log = logging.getLogger(__name__)
mimetypes.add_type("video/mp4", ".mp4")
mimetypes.add_type("image/webp", ".webp")


@dataclass
class OutputFile:
    node_id: str
    kind: str  # images | gifs | videos | animated | audio
    filename: str
    subfolder: str
    path: Path

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.filename)[0] or "application/octet-stream"

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "kind": self.kind, "filename": self.filename, "subfolder": self.subfolder,
                "content_type": self.content_type, "size": self.path.stat().st_size}


def bucket_of_endpoint(endpoint_url: str | None) -> str | None:
    """The bucket of a virtual-hosted-style endpoint (``https://BUCKET.s3.REGION.amazonaws.com``), as
    runpod's upload utility and worker-comfyui expect ``BUCKET_ENDPOINT_URL``; else None."""
    host = urlsplit(endpoint_url or "").hostname or ""
    match = re.match(r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.s3[.-]", host)
    return match.group(1) if match else None


def encoded_size(files: list[OutputFile]) -> int:
    return sum(4 * -(-f.path.stat().st_size // 3) for f in files)


def as_base64(files: list[OutputFile], limit: int) -> list[dict[str, Any]]:
    """Inline outputs; refuse (suggesting S3) when their base64 would exceed ``limit`` bytes."""
    total = encoded_size(files)
    if total > limit:
        raise OutputTooLarge(f"outputs are {total / 1e6:.1f} MB as base64, over the {limit / 1e6:.0f} MB payload limit; "
                             f'use "output": {{"mode": "s3"}} with a bucket (BUCKET_ENDPOINT_URL and credentials)',
                             size=total, limit=limit)
    return [{**f.describe(), "type": "base64", "data": base64.b64encode(f.path.read_bytes()).decode()} for f in files]


def to_s3(files: list[OutputFile], client: Any, bucket: str, prefix: str, expires_in: int) -> list[dict[str, Any]]:
    """Multipart upload (content type set) and a presigned GET URL per file."""
    from model_fetch import s3_upload

    out = []
    for f in files:
        key = f"{prefix.strip('/')}/{f.filename}" if prefix.strip("/") else f.filename
        try:
            s3_upload(client, f.path, f"s3://{bucket}/{key}", content_type=f.content_type)
            url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds
            raise OutputUploadFailed(f"uploading {f.filename} to bucket '{bucket}' failed ({type(exc).__name__}); "
                                     f"check BUCKET_ENDPOINT_URL, the bucket name and its credentials") from None
        log.info("uploaded %s to s3://%s/%s", f.filename, bucket, key)
        out.append({**f.describe(), "type": "s3_url", "data": url, "bucket": bucket, "key": key, "expires_in": expires_in})
    return out
