"""Job parsing: validate a RunPod job's ``input`` against ``job_schema.json`` and return a ``Job``.

The first violation becomes ``InvalidInput(<dotted field path>, <message>)`` (``params.width``,
``images.0.name``); messages never echo large values. Limits follow the worker's settings
(``WorkerSettings``, from the environment when none is given): image fields hold at most the base64
of ``max_input_bytes`` (``WORKER_MAX_INPUT_MB``, default 25 MB of 10^6 bytes; or
``parse_job(..., max_image_chars=...)``), ``allow_http_urls`` admits ``http://`` image URLs,
``timeout`` is capped by ``timeout_max``; ``default_workflow`` names the workflow a job without one runs.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Callable
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from .config import DEFAULT_WORKFLOW, WorkerSettings
from .errors import InvalidInput

SCHEMA_PATH = Path(__file__).with_name("job_schema.json")
ACTIONS_WITH_PARAMS = ("run",)
_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}


@dataclass(frozen=True)
class ImageInput:
    """A file to upload into ComfyUI's input folder before the run."""

    name: str
    image: str  # base64, data URI or https URL


@dataclass(frozen=True)
class OutputSpec:
    """Where outputs go: ``base64`` in the answer, or ``s3`` (bucket/prefix default to the worker's).
    ``mode`` None: the worker's default (``s3`` when ``BUCKET_ENDPOINT_URL`` is set, as worker-comfyui does)."""

    mode: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    expires_in: int | None = None


@dataclass(frozen=True)
class Job:
    """A validated job input."""

    workflow: str | dict[str, Any] = DEFAULT_WORKFLOW
    params: dict[str, Any] = field(default_factory=dict)
    images: tuple[ImageInput, ...] = ()
    output: OutputSpec = field(default_factory=OutputSpec)
    action: str = "run"
    timeout: float | None = None
    comfy_org_api_key: str | None = field(default=None, repr=False)  # never logged


@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The job input JSON Schema (draft 2020-12)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@functools.lru_cache(maxsize=8)
def _validator(max_image_chars: int, allow_http: bool, max_timeout: float) -> jsonschema.Draft202012Validator:
    schema = copy.deepcopy(load_schema())
    props = schema["properties"]
    for image in (props["params"]["properties"]["image"], props["images"]["items"]["properties"]["image"]):
        image["maxLength"] = max_image_chars
        if allow_http:
            image["anyOf"][0]["pattern"] = image["anyOf"][0]["pattern"].replace("^https://", "^https?://")
            image["errorMessage"] = image["errorMessage"].replace("https://", "http(s)://")
    props["timeout"]["maximum"] = max_timeout
    return jsonschema.Draft202012Validator(schema)


def base64_chars(n_bytes: int) -> int:
    """Characters of base64 (plus room for a data: URI header) that encode ``n_bytes``."""
    return 4 * math.ceil(n_bytes / 3) + 256


def _limits(settings: WorkerSettings, max_image_chars: int | None) -> tuple[int, bool, float]:
    """Image size, http:// admission and timeout cap from the worker's settings."""
    chars = max_image_chars or base64_chars(settings.max_input_bytes)
    max_timeout = float(settings.timeout_max)
    return chars, settings.allow_http_urls, int(max_timeout) if max_timeout.is_integer() else max_timeout


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "input"


def _join(base: str, key: Any) -> str:
    key = str(key)[:64] or '""'
    return key if base == "input" else f"{base}.{key}"


def _describe(error: ValidationError) -> tuple[str, str]:
    """``(field, message)`` for one jsonschema error, without echoing the instance."""
    field_path, schema = _path(error.absolute_path), error.schema
    kind, expected = error.validator, error.validator_value
    custom = schema.get("errorMessage") if isinstance(schema, dict) else None
    if kind in ("anyOf", "oneOf"):
        branches = {e.relative_schema_path[0] for e in error.context if e.validator != "type"}
        inner = [e for e in error.context if e.validator not in ("type", "pattern")]
        if len(branches) == 1 and inner:
            return _describe(inner[0])
        return field_path, custom or "does not match any allowed form"
    if kind == "additionalProperties":
        known = list(schema.get("properties") or {})
        extra = next((k for k in error.instance if k not in known), "?")
        hint = " (send the job's 'input' object, not the whole job)" if extra == "input" else ""
        return _join(field_path, extra), f"unknown key; expected one of: {', '.join(known)}{hint}"
    if kind == "required":
        missing = next((k for k in expected if k not in error.instance), "?")
        return _join(field_path, missing), "is required"
    if "propertyNames" in error.absolute_schema_path:
        return _join(field_path, error.instance), ("is not an allowed name (a letter or '_', then letters, digits, "
                                                   "'_'; at most 64 characters)")
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: custom or "must be " + " or ".join(str(_TYPE_WORDS.get(t, t)) for t in (
            expected if isinstance(expected, list) else [expected])),
        "enum": lambda: "must be one of: " + ", ".join(json.dumps(v) for v in expected),
        "const": lambda: f"must be {json.dumps(expected)}",
        "pattern": lambda: custom or "has an invalid format",
        "minLength": lambda: "must not be empty" if expected == 1 else f"must be at least {expected} characters",
        "maxLength": lambda: f"is longer than {expected} characters",
        "minimum": lambda: f"must be at least {expected}",
        "maximum": lambda: f"must be at most {expected}",
        "exclusiveMinimum": lambda: f"must be greater than {expected}",
        "exclusiveMaximum": lambda: f"must be less than {expected}",
        "multipleOf": lambda: f"must be a multiple of {expected}",
        "minItems": lambda: f"must have at least {expected} items",
        "maxItems": lambda: f"must have at most {expected} items",
        "minProperties": lambda: "must not be empty" if expected == 1 else f"must have at least {expected} entries",
        "maxProperties": lambda: f"must have at most {expected} entries",
    }
    message = messages[kind]() if kind in messages else (custom or f"is invalid ({kind})")
    return field_path, message


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 64


def _check_text(raw: dict[str, Any]) -> None:
    """Every key and string is valid Unicode (no lone surrogate, which JSON allows and UTF-8 cannot
    carry) and the input is at most ``MAX_DEPTH`` levels deep; iterative, so no depth can crash it."""
    stack: list[tuple[Any, str, int]] = [(raw, "input", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(where, f"is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise InvalidInput(where, "contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text")
        elif isinstance(value, dict):
            for key, item in value.items():
                path = _join(where, key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise InvalidInput(_join(where, "?"), "a key contains a lone surrogate: not valid Unicode text")
                stack.append((item, path, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}" if where != "input" else str(i), depth + 1) for i, item in enumerate(value))


def _check_values(raw: dict[str, Any]) -> None:
    """Rules JSON Schema cannot say well: finite numbers, unique image names, fields per action and mode."""
    for name, value in (raw.get("params") or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"params.{name}", "must be a finite number")
    if isinstance(raw.get("timeout"), float) and not math.isfinite(raw["timeout"]):
        raise InvalidInput("timeout", "must be a finite number")
    seen: dict[str, int] = {}
    for i, item in enumerate(raw.get("images") or []):
        if item["name"] in seen:
            raise InvalidInput(f"images.{i}.name", f"duplicates images.{seen[item['name']]}.name")
        seen[item["name"]] = i
    action = raw.get("action", "run")
    for key in ("params", "images"):
        if key in raw and action not in ACTIONS_WITH_PARAMS:
            raise InvalidInput(key, f"is only used with action 'run', not {action!r}")
    output = raw.get("output") or {}
    if output.get("mode") != "s3":
        for key in ("bucket", "prefix", "expires_in"):
            if key in output:
                raise InvalidInput(f"output.{key}", "is only used with mode 's3'")


def parse_job(raw: Any, settings: WorkerSettings | None = None, max_image_chars: int | None = None) -> Job:
    """Validate a job's ``input`` (an object, or a JSON string of one as some worker-comfyui clients send)
    and return it as a ``Job``; raise ``InvalidInput`` naming the field. ``settings``: the worker's
    (``WorkerSettings.from_env()`` when None)."""
    settings = settings if settings is not None else WorkerSettings.from_env()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except RecursionError:
            raise InvalidInput("input", "is nested too deeply") from None
        except ValueError:
            raise InvalidInput("input", "is a string but not valid JSON; send an object") from None
    if not isinstance(raw, dict):
        raise InvalidInput("input", "must be an object (or a JSON string of one)")
    _check_text(raw)
    validator = _validator(*_limits(settings, max_image_chars))
    try:
        error = next(iter(validator.iter_errors(raw)), None)
    except RecursionError:
        raise InvalidInput("input", "is nested too deeply") from None
    if error is not None:
        raise InvalidInput(*_describe(error))
    _check_values(raw)
    output = raw.get("output") or {}
    timeout = raw.get("timeout")
    return Job(
        workflow=raw.get("workflow", settings.default_workflow),
        params=dict(raw.get("params") or {}),
        images=tuple(ImageInput(i["name"], i["image"]) for i in raw.get("images") or []),
        output=OutputSpec(output.get("mode"), output.get("bucket"), output.get("prefix"), output.get("expires_in")),
        action=raw.get("action", "run"),
        timeout=float(timeout) if timeout is not None else None,
        comfy_org_api_key=raw.get("comfy_org_api_key") or raw.get("api_key_comfy_org"),
    )
