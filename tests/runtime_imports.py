"""Run with the *runtime-only* environment's Python: import every module of the worker, model_fetch
and the node pack (the pack inside ComfyUI's import context), and check that each third-party name
the code imports anywhere (function-level imports too) is installed and declared: in pyproject.toml
for worker/model_fetch, in the pack's requirements.txt or ComfyUI's for the pack.

    python tests/runtime_imports.py <comfyui_dir>     # prints a JSON report, exit 1 on a problem
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import json
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "custom_nodes" / "wan_serverless"
COMFY_MODULES = {"comfy", "comfy_extras", "comfy_api", "comfy_execution", "folder_paths", "nodes", "server",
                 "execution", "node_helpers", "latent_preview", "app", "utils"}


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#")[0])
        if m:
            names.add(m.group(1).lower().replace("_", "-"))
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports for the type checker (dev requirements), never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def third_party_imports(files: list[Path]) -> dict[str, list[str]]:
    """Top-level imported names that are neither stdlib, relative, ours nor ComfyUI's: {name: [file, ...]}.
    Imports under ``if TYPE_CHECKING:`` never run, so they are not counted."""
    found: dict[str, list[str]] = {}
    ours = {"worker", "model_fetch", "wan_serverless", "tests"}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        types_only = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in types_only:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ours or top in COMFY_MODULES or top == "__future__":
                    continue
                found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def check(comfyui: Path) -> dict:
    problems: list[str] = []
    dists = md.packages_distributions()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {"project": requirement_names(project),
                "pack": requirement_names((PACK / "requirements.txt").read_text().splitlines())
                | requirement_names((comfyui / "requirements.txt").read_text().splitlines())}
    groups = {"project": sorted([*ROOT.glob("worker/*.py"), *ROOT.glob("model_fetch/*.py")]),
              "pack": sorted(PACK.glob("*.py"))}
    for group, files in groups.items():
        for name, where in sorted(third_party_imports(files).items()):
            owners = {d.lower().replace("_", "-") for d in dists.get(name, [])}
            if not owners:
                problems.append(f"{name}: imported by {where[0]} but not installed")
            elif not owners & declared[group]:
                problems.append(f"{name} (distribution {sorted(owners)[0]}): imported by {where[0]} but not declared"
                                f" in {'pyproject.toml' if group == 'project' else 'the pack requirements.txt'}")
    imported = []
    for package in ("worker", "model_fetch"):
        mod = importlib.import_module(package)
        for info in pkgutil.iter_modules(mod.__path__, package + "."):
            if info.name != "worker.__main__":
                importlib.import_module(info.name)
                imported.append(info.name)
    sys.path.insert(0, str(comfyui))
    sys.path.insert(0, str(PACK.parent))
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0], "--cpu"]
    import folder_paths  # noqa: F401 - the pack's nodes load only inside ComfyUI's import context

    pack = importlib.import_module(PACK.name)
    for info in pkgutil.iter_modules(pack.__path__, PACK.name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
    if not pack.NODE_CLASS_MAPPINGS:
        problems.append("the pack exported no nodes")
    return {"imported": imported, "nodes": sorted(pack.NODE_CLASS_MAPPINGS), "problems": problems}


if __name__ == "__main__":
    report = check(Path(sys.argv[1]))
    print(json.dumps(report))
    sys.exit(1 if report["problems"] else 0)
