"""model_fetch is a closed package: the worker and the node pack use only its public names.

Public: the names in ``model_fetch.__all__`` and the modules ``model_fetch.config``,
``model_fetch.errors`` and ``model_fetch.cli``. The test reads the source (AST), so it also sees
imports inside functions and attribute uses such as ``model_fetch.X`` or ``ctx.mf.X``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import model_fetch

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = [ROOT / "worker", ROOT / "custom_nodes" / "wan_serverless"]
PUBLIC_MODULES = {"model_fetch", "model_fetch.config", "model_fetch.errors", "model_fetch.cli"}
# names the clients bind to the model_fetch module itself
MODULE_ALIASES = {"model_fetch", "mf"}


def _public_names(module: str) -> set[str]:
    if module == "model_fetch":
        return set(model_fetch.__all__)
    import importlib

    mod = importlib.import_module(module)
    return {n for n in vars(mod) if not n.startswith("_")}


def violations(tree: ast.AST) -> list[str]:
    """Each private model_fetch module or name the source of ``tree`` uses, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "model_fetch" and alias.name not in PUBLIC_MODULES:
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "model_fetch":
            if node.module not in PUBLIC_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
                continue
            public = _public_names(node.module)
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if a.name != "*" and a.name not in public]
        elif isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
            if name in MODULE_ALIASES and node.attr not in model_fetch.__all__ and f"model_fetch.{node.attr}" not in PUBLIC_MODULES:
                found.append(f"{node.lineno}: {name}.{node.attr}")
    return found


def _sources() -> list[Path]:
    return sorted(p for d in CLIENTS for p in d.rglob("*.py"))


def test_the_clients_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert "worker/jobs.py" in names and "custom_nodes/wan_serverless/pack_fetch.py" in names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_worker_and_pack_use_only_public_model_fetch_names(path: Path):
    bad = violations(ast.parse(path.read_text(), str(path)))
    assert not bad, f"{path.relative_to(ROOT)} uses model_fetch internals (export what it needs in __all__): {bad}"


def test_the_walk_catches_private_modules_and_names():
    source = ("import model_fetch._s3\nfrom model_fetch._model_folders import canonical\nfrom model_fetch import _embedded\n"
              "from model_fetch.errors import _private\ndef f(ctx):\n    return ctx.mf.defaults_, model_fetch._LAZY\n")
    assert [v.split(":")[0] for v in violations(ast.parse(source))] == ["1", "2", "3", "4", "6", "6"]
    fine = ("import model_fetch\nfrom model_fetch import ensure, FileProgress\nfrom model_fetch.errors import ModelFetchError\n"
            "def f(ctx):\n    return ctx.mf.Manifest(), model_fetch.plan\n")
    assert violations(ast.parse(fine)) == []


def test_every_public_name_resolves():
    """``__all__`` lists only what exists (lazy names included), and nothing private."""
    for name in model_fetch.__all__:
        assert not name.startswith("_")
        assert getattr(model_fetch, name) is not None, name


def test_internal_modules_are_private():
    package = Path(model_fetch.__file__).parent
    public = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    assert public == {"cli", "config", "errors"}
