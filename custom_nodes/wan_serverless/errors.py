"""The pack's failure kinds, in the project's one error protocol (``model_fetch.errors.CodedError``): a
``code`` (docs/errors.md), a message a user can act on, answer fields and ``to_answer()``; plus the HTTP
status the pack's routes answer them with. Imports neither ComfyUI nor torch, so tests and tools read the
codes without a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from model_fetch.errors import CodedError

if TYPE_CHECKING:
    from model_fetch import Refusal


class PackError(CodedError):
    """Base class: a stable ``code`` and a message that says what to do."""

    code = "pack_error"
    #: what the pack's routes answer this error with
    http_status: ClassVar[int] = 500


class ModelFetchFailed(PackError, RuntimeError):
    """A manifest model could not be fetched; the message says which file, from where, and why."""

    code = "pack_fetch_failed"


class UnknownModels(PackError, ValueError):
    """Names given to ``pull`` that no manifest lists (the same meaning as model_fetch's ``model_unknown``)."""

    code = "model_unknown"
    http_status = 400

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"no model_fetch manifest lists {', '.join(repr(n) for n in names)}: use the names "
                         f"GET /model_fetch/status shows, or add entries to a manifest (MODEL_FETCH_MANIFEST)",
                         unknown=names)
        self.names = names


class BadRequest(PackError, ValueError):
    """A ``/model_fetch/*`` request body is malformed; the message says what is expected."""

    code = "bad_request"
    http_status = 400


class FetchDisabled(PackError):
    """Fetch on first use is off in this ComfyUI (its settings are unusable); the message says why."""

    code = "fetch_disabled"
    http_status = 503


class SourcesRefused(PackError):
    """A workflow's embedded model URLs break the URL rules (``model_fetch.check_embedded_sources``); the
    answer's ``refusals`` holds one message per file, ``refused`` the model_fetch refusals themselves."""

    code = "model_fetch_refused"
    http_status = 400

    def __init__(self, refused: list[Refusal]) -> None:
        refusals = [r.message() for r in refused]
        super().__init__("; ".join(refusals), refusals=refusals)
        self.refused = refused


class ModelNotFound(PackError, FileNotFoundError):
    """A model name given to a loader is in none of the folders ComfyUI searches and no manifest lists it."""

    code = "model_not_found"


class UnsupportedTextEncoder(PackError, ValueError):
    """A text encoder file/type combination this pack cannot load."""

    code = "text_encoder_unsupported"


class GGUFFormatError(PackError, ValueError):
    """The file is not a GGUF this pack can read, or its metadata or data is inconsistent."""

    code = "gguf_invalid"


class UnsupportedModel(PackError, ValueError):
    """The GGUF is readable but holds a model this loader cannot build."""

    code = "model_unsupported"


class QuantTypeUnsupported(PackError, ValueError):
    """A GGUF tensor uses a GGML type this pack cannot dequantize (``dequant.UnsupportedQuantType``
    builds the message, with the supported types)."""

    code = "quant_type_unsupported"
