"""Deliver a job's output files: inline base64, or uploaded to a bucket with presigned GET URLs.

Presigned URLs are returned to the caller and never logged.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputTooLarge, OutputUploadFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


def join_key(*parts: str) -> str:
    """An S3 key from its parts, without empty segments (``wan/2025-01/`` + ``job`` -> ``wan/2025-01/job``)."""
    return "/".join(seg for part in parts for seg in str(part).split("/") if seg)


def encoded_size(files: list[OutputFile]) -> int:
    return sum(4 * -(-f.path.stat().st_size // 3) for f in files)


def _too_large(what: str, size: int, limit: int) -> OutputTooLarge:
    return OutputTooLarge(f"{what} {size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit of an answer "
                          f'(WORKER_MAX_BASE64_MB); use "output": {{"mode": "s3"}} with a bucket '
                          f"(BUCKET_ENDPOINT_URL and credentials)", size=size, limit=limit)


def as_base64(files: list[OutputFile], limit: int) -> list[dict[str, Any]]:
    """Inline outputs; refuse (suggesting S3) when their base64 alone would exceed ``limit`` bytes."""
    total = encoded_size(files)
    if total > limit:
        raise _too_large("the outputs are", total, limit)
    return [{**f.describe(), "type": "base64", "data": base64.b64encode(f.path.read_bytes()).decode()} for f in files]


def to_s3(files: list[OutputFile], client: S3Client, bucket: str, prefix: str, expires_in: int) -> list[dict[str, Any]]:
    """Multipart upload (content type set) and a presigned GET URL per file."""
    from model_fetch import s3_upload

    out = []
    for f in files:
        key = join_key(prefix, f.filename)
        try:
            s3_upload(client, f.path, f"s3://{bucket}/{key}", content_type=f.content_type)
            url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds
            raise OutputUploadFailed(f"uploading {f.filename} to bucket '{bucket}' failed ({type(exc).__name__}); "
                                     f"check BUCKET_ENDPOINT_URL, the bucket name and its credentials") from None
        log.info("uploaded %s to s3://%s/%s", f.filename, bucket, key)
        out.append({**f.describe(), "type": "s3_url", "data": url, "bucket": bucket, "key": key, "expires_in": expires_in})
    return out


def answer_outputs(delivered: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(images, outputs)`` of an answer, each file's data once: ``images`` in worker-comfyui's shape
    (``filename``, ``type``, ``data``, with our fields beside them); ``outputs`` describes the same files
    without ``data``, each naming its entry in ``images`` by ``image`` (index)."""
    return delivered, [{k: v for k, v in d.items() if k != "data"} | {"image": i} for i, d in enumerate(delivered)]


def check_answer_size(answer: dict[str, Any], limit: int) -> None:
    """Refuse an answer whose JSON (as RunPod sends it) exceeds ``limit`` bytes."""
    size = len(json.dumps(answer).encode())
    if size > limit:
        raise _too_large("the answer is", size, limit)
