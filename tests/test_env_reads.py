"""Settings are read in one place per package: no environment read outside the config modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "model_fetch", "custom_nodes")
CONFIG_MODULES = {"worker/config.py", "model_fetch/config.py", "model_fetch/_config.py",
                  "custom_nodes/wan_serverless/config.py"}


def environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` for every ``os.environ``/``os.environb``/``os.getenv``/``os.putenv`` use, also
    when imported by name (``from os import environ``)."""
    names = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in names]
    return found


def test_the_detector_sees_every_form():
    code = "import os\nfrom os import environ\na = os.environ.get('X')\nb = os.getenv('Y')\n"
    found = sorted(what for _, what in environment_reads(ast.parse(code)))
    assert found == ["from os import environ", "os.environ", "os.getenv"]


def test_no_environment_read_outside_the_config_modules():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in CONFIG_MODULES:
                continue
            offenders += [f"{rel}:{line}: {what}" for line, what in environment_reads(ast.parse(path.read_text()))]
    assert not offenders, ("read settings in worker/config.py or model_fetch/config.py, not here:\n"
                           + "\n".join(offenders))
