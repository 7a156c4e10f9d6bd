"""One error protocol: every error class has a code, codes are unique across the project, and
docs/errors.md's one table lists every code raised or answered."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import model_fetch.errors
import worker.errors

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "custom_nodes" / "wan_serverless"
#: codes more than one class defines because they mean the same thing (docs/errors.md says so)
SAME_MEANING = {"model_unknown": {"UnknownModelError", "UnknownModels"}}


def _pack_errors():
    spec = importlib.util.spec_from_file_location("_pack_errors_under_test", PACK / "errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports neither ComfyUI nor torch
    return module


def error_classes() -> list[type]:
    pack = _pack_errors()
    bases = (worker.errors.WorkerError, model_fetch.errors.ModelFetchError, pack.PackError)
    return [cls for module in (worker.errors, model_fetch.errors, pack)
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and issubclass(cls, bases)]


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE)) - {"code"}


def route_codes() -> set[str]:
    text = (PACK / "routes.py").read_text() + (PACK / "workflow_plan.py").read_text()
    return set(re.findall(r'_error\(\d+, "([a-z_]+)"', text)) | set(re.findall(r'"type": "([a-z_]+)"', text))


def test_every_error_has_a_code_and_answers_in_one_shape():
    for cls in error_classes():
        assert re.fullmatch(r"[a-z_]+", cls.code), cls  # its own, or its parent's when it refines one (reason=)
        assert callable(getattr(cls, "to_answer", None)), cls
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
    assert not (route_codes() & set(owners)) - {"model_unknown"}, "a route code collides with an error class's"


def test_every_code_is_in_the_one_table():
    raised = {cls.code for cls in error_classes()} | route_codes()
    assert raised - documented_codes() == set(), "add these codes to docs/errors.md"
    assert documented_codes() - raised == set(), "docs/errors.md lists codes nothing raises"
