"""Hugging Face sources: URLs parsed and metadata read with huggingface_hub; bytes through our engine.

Accepted forms: ``https://huggingface.co/<repo>/resolve/<rev>/<path>`` (rewritten to ``HF_ENDPOINT``
when set) and ``hf://<namespace>/<repo>[@<rev>]/<path>``. The Hub's HEAD gives the LFS sha256
(``X-Linked-Etag``), the size and the CDN location; the token (``HF_TOKEN``) is sent to the Hub
host only and never printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .config import Settings
from .errors import SourceNotFound
from ._reach import unreachable, why_unreachable
from ._transports import HttpTransport, Probe, Transient, redact

HUB_HOSTS = {"huggingface.co", "hf.co"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HfFile:
    repo_id: str
    revision: str
    filename: str
    repo_type: str | None = None


def parse_hf_url(url: str, endpoint: str) -> HfFile | None:
    """An ``HfFile`` if ``url`` names a file on the Hub (or the configured endpoint), else None."""
    if url.startswith("hf://"):
        rest = url[len("hf://"):]
        parts = rest.split("/")
        if len(parts) < 3:
            return None
        repo, _, revision = parts[1].partition("@")
        return HfFile(repo_id=f"{parts[0]}/{repo}", revision=revision or "main", filename="/".join(parts[2:]))
    split = urlsplit(url)
    endpoint_host = urlsplit(endpoint).netloc
    if split.netloc not in HUB_HOSTS | {endpoint_host}:
        return None
    m = re.match(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", split.path)
    if not m:
        return None
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(m.group(1) or "")
    return HfFile(repo_id=m.group(2), revision=unquote(m.group(3)), filename=unquote(m.group(4)), repo_type=repo_type)


class HfTransport(HttpTransport):
    """Reads metadata through huggingface_hub, then ranges from the resolved (CDN) location."""

    def __init__(self, file: HfFile, settings: Settings) -> None:
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(file.repo_id, file.filename, revision=file.revision, repo_type=file.repo_type,
                         endpoint=settings.hf_endpoint)
        headers = {"Authorization": f"Bearer {settings.hf_token}"} if settings.hf_token else {}
        super().__init__(url, settings, headers=headers, label=redact(url))
        self.file = file

    def probe(self) -> Probe:
        from huggingface_hub import get_hf_file_metadata
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            RepositoryNotFoundError, RevisionNotFoundError)

        try:
            meta = get_hf_file_metadata(self.url, token=self.settings.hf_token or False,
                                        timeout=self.settings.first_byte_timeout, endpoint=self.settings.hf_endpoint)
        except GatedRepoError:
            raise SourceNotFound(f"{self.label}: gated repository; accept its terms on the Hub and set HF_TOKEN") from None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            raise SourceNotFound(f"{self.label}: {type(exc).__name__} (check the name, revision and HF_TOKEN)") from None
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                raise SourceNotFound(f"{self.label}: HTTP {status} (check HF_TOKEN)") from None
            raise Transient(f"{self.label}: Hub metadata request failed (HTTP {status})") from None
        except Exception as exc:  # noqa: BLE001 - connection errors of the Hub client
            why = why_unreachable(exc)
            if why:
                raise unreachable(self.url, why, self.settings.first_byte_timeout, hub=True) from None
            raise Transient(f"{self.label}: Hub metadata request failed ({type(exc).__name__})") from None
        etag = (meta.etag or "").strip('"').lower()
        sha = etag if _SHA256.match(etag) else None
        if meta.location:
            self.resolved = meta.location
        base = super().probe()
        size = meta.size if meta.size is not None else base.size
        identity = f"hf:{self.file.repo_id}@{meta.commit_hash or self.file.revision}:{self.file.filename}|{sha or etag}|{size}"
        return Probe(size=size, ranges=base.ranges, identity=identity, sha256=sha)
