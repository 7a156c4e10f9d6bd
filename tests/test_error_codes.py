"""One error protocol: every error class has a code, codes are unique across the project, and
docs/errors.md's one table lists every code raised or answered."""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import re
from pathlib import Path

import model_fetch.errors
import worker.errors

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "custom_nodes" / "wan_serverless"
SOURCES = [ROOT / "model_fetch", ROOT / "worker", PACK]
#: exceptions that never reach a user: control flow inside one module, caught where they are raised
INTERNAL_SIGNALS = {"Transient", "RangeIgnored", "Cancelled", "PackedWriteError"}
#: codes more than one class defines because they mean the same thing (docs/errors.md says so)
SAME_MEANING = {"model_unknown": {"UnknownModelError", "UnknownModels"}}


def _pack_errors():
    spec = importlib.util.spec_from_file_location("_pack_errors_under_test", PACK / "errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports neither ComfyUI nor torch
    return module


def error_classes() -> list[type]:
    """Every error class of the three families: each derives from the one base, ``CodedError``."""
    pack = _pack_errors()
    return [cls for module in (worker.errors, model_fetch.errors, pack)
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and issubclass(cls, BaseException)]


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE)) - {"code"}


def test_every_error_derives_from_the_one_base_and_answers_in_one_shape():
    base = model_fetch.errors.CodedError
    for cls in error_classes():
        assert issubclass(cls, base), f"{cls.__module__}.{cls.__name__} does not derive from CodedError"
        assert re.fullmatch(r"[a-z_]+", cls.code), cls  # its own, or its parent's when it refines one (reason=)
    answer = model_fetch.errors.LeaseTimeout("held by another process; retry").to_answer()
    assert answer == {"error": "held by another process; retry", "code": "lease_timeout"}
    assert worker.errors.InvalidInput("params.width", "must be a number").to_answer()["code"] == "invalid_input"
    unknown = _pack_errors().UnknownModels(["x.gguf"]).to_answer()
    assert unknown["code"] == "model_unknown" and unknown["unknown"] == ["x.gguf"] and "'x.gguf'" in unknown["error"]


def test_codes_are_unique_across_the_project():
    owners: dict[str, set[str]] = {}
    for cls in error_classes():
        if "code" in cls.__dict__:  # a subclass without its own code refines its parent's case
            owners.setdefault(cls.code, set()).add(cls.__name__)
    shared = {code: names for code, names in owners.items() if len(names) > 1}
    assert shared == SAME_MEANING


def test_every_code_is_in_the_one_table():
    raised = {cls.code for cls in error_classes()}
    assert raised - documented_codes() == set(), "add these codes to docs/errors.md"
    assert documented_codes() - raised == set(), "docs/errors.md lists codes nothing raises"


def exception_classes_in_source() -> dict[str, bool]:
    """Every exception class defined anywhere in model_fetch, the worker and the pack (read from the source, so
    the pack's torch and ComfyUI modules need not import): its name -> whether it derives from CodedError."""
    bases: dict[str, list[str]] = {}
    for path in (p for root in SOURCES for p in root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                                    if isinstance(b, ast.Name | ast.Attribute)]
    builtin_errors = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}

    def derives(name: str, target: set[str], seen: frozenset[str] = frozenset()) -> bool:
        return name in target or any(b in target or (b in bases and b not in seen and derives(b, target, seen | {name}))
                                     for b in bases.get(name, []))

    return {name: derives(name, {"CodedError"}) for name in bases if derives(name, builtin_errors | {"CodedError"})}


def test_every_raised_error_outside_the_error_modules_is_coded_too():
    """An exception class anywhere in the code carries a code (derives from CodedError) unless it is an internal
    signal that never reaches a user; a new ``class FooError(ValueError)`` fails here."""
    classes = exception_classes_in_source()
    assert {"UnknownName", "Mismatch", "HostUnresolved", "UnsupportedQuantType", "TextEncoderFormatError"} <= set(classes)
    uncoded = {name for name, coded in classes.items() if not coded} - INTERNAL_SIGNALS
    assert uncoded == set(), "derive these from an error class of docs/errors.md"
    assert INTERNAL_SIGNALS <= set(classes), "an internal signal was renamed or removed: update INTERNAL_SIGNALS"
