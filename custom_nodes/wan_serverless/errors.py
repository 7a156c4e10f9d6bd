"""The pack's failure kinds, in the project's one error shape: a ``code`` (docs/errors.md), a message a
user can act on, and ``to_answer()`` (``{"error", "code", ...fields}``, as the routes answer and the worker
would). Imports neither ComfyUI nor torch, so tests and tools read the codes without a server.
"""

from __future__ import annotations

from typing import Any


class PackError(Exception):
    """Base class: a stable ``code`` and a message that says what to do."""

    code = "pack_error"

    def fields(self) -> dict[str, Any]:
        """Extra fields of the answer (none by default)."""
        return {}

    def to_answer(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code, **self.fields()}


class ModelFetchFailed(PackError, RuntimeError):
    """A manifest model could not be fetched; the message says which file, from where, and why."""

    code = "pack_fetch_failed"


class UnknownModels(PackError, ValueError):
    """Names given to ``pull`` that no manifest lists (the same meaning as model_fetch's ``model_unknown``)."""

    code = "model_unknown"

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"no model_fetch manifest lists {', '.join(repr(n) for n in names)}: use the names "
                         f"GET /model_fetch/status shows, or add entries to a manifest (MODEL_FETCH_MANIFEST)")
        self.names = names

    def fields(self) -> dict[str, Any]:
        return {"unknown": self.names}


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
