"""Before a job runs: can its outputs reach their S3 bucket? Credentials are there, and the bucket answers
and takes a write (a tiny object under the job's prefix, put and deleted). A job whose outputs could not be
delivered fails at once with ``output_unavailable`` instead of after its whole run."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from .errors import OutputUnavailable
from .outputs import join_key

if TYPE_CHECKING:  # types only (mypy-boto3-s3, a dev requirement)
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None


def check_s3_target(client: S3Client, bucket: str, prefix: str) -> None:
    """Raise ``OutputUnavailable`` (with ``reason``: ``credentials``, ``bucket`` or ``unreachable``) unless
    ``client`` may write under ``s3://bucket/prefix``. The probe object is removed again (a failed delete is
    only logged: a bucket may allow writes and not deletes)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    key = join_key(prefix, f".write-check-{uuid.uuid4().hex}")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
    except NoCredentialsError:
        raise OutputUnavailable("S3 output has no credentials: set BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY "
                                "(or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", reason="credentials") from None
    except ClientError as exc:
        code = _error_code(exc) or "error"
        reason = "bucket" if code in ("NoSuchBucket", "404", "NotFound") else "credentials" if code in (
            "AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden") else "bucket"
        raise OutputUnavailable(f"S3 output bucket '{bucket}' refused a test write ({code}): check the bucket name "
                                "(output.bucket, WORKER_OUTPUT_BUCKET), BUCKET_ENDPOINT_URL and that the credentials "
                                "may write to it", reason=reason) from None
    except (BotoCoreError, OSError) as exc:
        raise OutputUnavailable(f"S3 output endpoint did not answer ({type(exc).__name__}): check BUCKET_ENDPOINT_URL",
                                reason="unreachable") from None
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - writable is what matters; the probe is 0 bytes
        log.info("output check: could not delete the probe object in bucket '%s' (%s)", bucket, type(exc).__name__)


__all__ = ["check_s3_target"]
