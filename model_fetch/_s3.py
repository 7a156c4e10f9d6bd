"""S3-compatible storage through boto3: a ranged source for the engine, mirror write-back, ``push``.

Works with AWS S3, Backblaze B2, Cloudflare R2 and MinIO: the endpoint comes from
``BUCKET_ENDPOINT_URL`` (RunPod's name) or ``AWS_ENDPOINT_URL(_S3)``; credentials from
``BUCKET_ACCESS_KEY_ID``/``BUCKET_SECRET_ACCESS_KEY`` or boto3's standard chain (``AWS_*``,
profiles, instance roles). Objects written here carry their sha256 in metadata (``x-amz-meta-sha256``).
Credentials and presigned URLs are never logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Settings
from .errors import ModelFetchError, SourceNotFound, UploadError
from ._manifest import ModelEntry
from ._store import Store
from ._transports import Probe, Transient

if TYPE_CHECKING:  # types only (mypy-boto3-s3, a dev requirement): boto3 itself ships none
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
BLOCK = 1024 * 1024
MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
FORBIDDEN = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "AllAccessDisabled"}


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ModelFetchError(f"not an s3:// URL: {url!r}")
    return parts.netloc, parts.path.lstrip("/")


VIRTUAL_HOST = re.compile(r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.(s3[.-].+)$")


@dataclass(frozen=True)
class Endpoint:
    """What ``BUCKET_ENDPOINT_URL`` says: the service URL boto3 is given, the bucket the URL names (if
    any), whether requests address the bucket by host name (virtual-hosted) and the region it names."""

    url: str | None
    bucket: str | None = None
    virtual: bool = False
    region: str | None = None


def parse_endpoint(url: str | None) -> Endpoint:
    """Split an endpoint URL as RunPod users write it: virtual-hosted
    (``https://BUCKET.s3.REGION.amazonaws.com``: the bucket leaves the host, requests go to
    ``BUCKET.<service host>``) or path-style (``https://HOST[/BUCKET]``: the bucket leaves the path).
    Either way an object key is exactly the key asked for, never prefixed with the bucket."""
    if not url:
        return Endpoint(None)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    region_match = re.search(r"(?:^|\.)s3[.-]([a-z0-9-]+)\.", host)
    region = region_match.group(1) if region_match and region_match.group(1) != "amazonaws" else None
    virtual = VIRTUAL_HOST.match(host)
    if virtual:
        return Endpoint(f"{parts.scheme}://{virtual.group(2)}{port}", virtual.group(1), True, region)
    path = parts.path.strip("/")
    return Endpoint(f"{parts.scheme}://{parts.netloc}", path.split("/")[0] if path else None, False, region)


def make_client(settings: Settings, max_pool: int = 10) -> S3Client:
    """A boto3 S3 client for the configured endpoint (``parse_endpoint``); retries are ours, not botocore's."""
    import boto3
    from botocore.config import Config

    endpoint = parse_endpoint(settings.s3_endpoint_url)
    style = {"addressing_style": "virtual" if endpoint.virtual else "path"} if endpoint.url else {}
    config = Config(signature_version="s3v4", max_pool_connections=max_pool,
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=settings.connect_timeout, read_timeout=settings.stall_timeout, s3=style)
    kwargs = {"config": config, "region_name": settings.s3_region or endpoint.region or "us-east-1"}
    if endpoint.url:
        kwargs["endpoint_url"] = endpoint.url
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        kwargs["aws_access_key_id"] = settings.s3_access_key_id
        kwargs["aws_secret_access_key"] = settings.s3_secret_access_key
    client: S3Client = boto3.session.Session().client("s3", **kwargs)
    return client


def _classify(exc: Exception, label: str) -> Exception:
    """botocore errors -> SourceNotFound (won't fix itself) or Transient."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return SourceNotFound(f"{label}: no S3 credentials (set BUCKET_ACCESS_KEY_ID/BUCKET_SECRET_ACCESS_KEY or AWS_*)")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in MISSING or status == "404":
            return SourceNotFound(f"{label}: object not found")
        if code in FORBIDDEN or status == "403":
            return SourceNotFound(f"{label}: access denied ({code or status}); check the bucket credentials")
        return Transient(f"{label}: S3 error {code or status}")
    return Transient(f"{label}: {type(exc).__name__}")


class S3Transport:
    """Ranged GETs of one object; the engine provides parallelism, journal, hashing and placement."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.bucket, self.key = split_url(url)
        self.label = f"s3://{self.bucket}/{self.key}"
        self.client = make_client(settings, max_pool=settings.connections + 2)

    def probe(self) -> Probe:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:  # noqa: BLE001 - classified below
            raise _classify(exc, self.label) from None
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        size = int(head["ContentLength"])
        return Probe(size=size, ranges=True, identity=f"{head.get('ETag', '')}|{size}", sha256=meta.get("sha256"))

    def read(self, start: int, end: int | None) -> Iterator[bytes]:
        rng = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=rng)["Body"]
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, self.label) from None
        try:
            yield from body.iter_chunks(BLOCK)
        except Exception as exc:  # noqa: BLE001 - connection resets, read timeouts
            raise Transient(f"{self.label}: {type(exc).__name__} while reading") from None
        finally:
            body.close()


def mirror_url(base: str, entry: ModelEntry) -> str:
    """Where ``entry`` lives under a mirror prefix: ``s3://bucket/prefix/<directory>/<name>``."""
    bucket, prefix = split_url(base.rstrip("/") + "/")
    prefix = prefix.rstrip("/")
    return f"s3://{bucket}/{prefix + '/' if prefix else ''}{entry.directory}/{entry.name}"


def upload(client: S3Client, path: Path, url: str, sha256: str | None = None, content_type: str | None = None) -> None:
    """Multipart upload (boto3's transfer manager) with the sha256 in the object metadata."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = split_url(url)
    extra: dict[str, Any] = {}
    if sha256:
        extra["Metadata"] = {"sha256": sha256}
    if content_type:
        extra["ContentType"] = content_type
    config = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024, max_concurrency=4)
    client.upload_file(str(path), bucket, key, ExtraArgs=extra or None, Config=config)


class WritebackUploader:
    """``ensure`` hook: verified origin downloads are uploaded to the mirror in the background."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.mirror_writeback or ""
        self.threads: list[threading.Thread] = []
        self.results: list[dict[str, Any]] = []

    def target(self, entry: ModelEntry) -> str:
        explicit = [m for m in entry.mirrors if m.startswith("s3://")]
        return explicit[0] if explicit else mirror_url(self.base, entry)

    def __call__(self, entry: ModelEntry, path: Path, sha256: str, source: str, verified: bool) -> None:
        target = self.target(entry)
        if source != entry.url or source.startswith("s3://"):
            return  # only origin downloads are written back
        if not verified:
            log.warning("%s: not written back to the mirror: no expected sha256 to verify it against", entry.name)
            return
        t = threading.Thread(target=self._upload, args=(entry, path, sha256, target), name="writeback", daemon=True)
        t.start()
        self.threads.append(t)

    def _upload(self, entry: ModelEntry, path: Path, sha256: str, target: str) -> None:
        try:
            upload(make_client(self.settings), path, target, sha256=sha256)
            self.results.append({"name": entry.name, "url": target, "state": "uploaded"})
            log.info("%s: written back to %s", entry.name, target)
        except Exception as exc:  # noqa: BLE001 - write-back never fails the job
            self.results.append({"name": entry.name, "url": target, "state": "failed", "error": type(exc).__name__})
            log.warning("%s: write-back to %s failed (%s); the job is not affected", entry.name, target, type(exc).__name__)

    def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
        for t in self.threads:
            t.join(timeout)
        return self.results


def writeback_hook(settings: Settings) -> WritebackUploader | None:
    """The ``after_place`` hook of ``ensure`` that uploads origin downloads to ``MODEL_FETCH_MIRROR_WRITEBACK``;
    None when that is unset."""
    return WritebackUploader(settings) if settings.mirror_writeback else None


def push(entries: list[ModelEntry], store: Store, settings: Settings, base: str) -> list[dict[str, Any]]:
    """Seed a mirror from the local store: upload present, stamped files not already there with that sha256."""
    client = make_client(settings)
    results = []
    for entry in entries:
        path = store.find(entry)
        target = next((m for m in entry.mirrors if m.startswith("s3://")), None) or mirror_url(base, entry)
        stamp = store.valid_stamp(path) if path else None
        if path is None or stamp is None:
            results.append({"name": entry.name, "url": target, "state": "missing" if path is None else "unverified"})
            continue
        bucket, key = split_url(target)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            if (head.get("Metadata") or {}).get("sha256") == stamp.sha256:
                results.append({"name": entry.name, "url": target, "state": "present"})
                continue
        except Exception as exc:  # noqa: BLE001
            err = _classify(exc, target)
            if not (isinstance(err, SourceNotFound) and "not found" in str(err)):
                raise UploadError(f"push to {target}: {err}") from None
        try:
            upload(client, path, target, sha256=stamp.sha256)
        except Exception as exc:  # noqa: BLE001 - boto3 raises many kinds (S3UploadFailedError, ClientError, ...)
            raise UploadError(f"push of {entry.name} to {target} failed: {_reason(exc)}; check that bucket "
                              f"'{bucket}' exists and the credentials (BUCKET_ACCESS_KEY_ID, BUCKET_ENDPOINT_URL) "
                              "may write to it") from None
        results.append({"name": entry.name, "url": target, "state": "uploaded"})
    return results


def _reason(exc: BaseException) -> str:
    """A boto3 failure in a few words: the S3 error code (``NoSuchBucket``, ``AccessDenied``) or the type."""
    for e in (exc, exc.__cause__, exc.__context__, *exc.args):
        response = getattr(e, "response", None) if isinstance(e, BaseException) else None
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code:
            return str(code)
    text = str(exc)
    for code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        if code in text:
            return code
    return type(exc).__name__
