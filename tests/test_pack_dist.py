"""The pack's distribution metadata, checked without building anything (tests/test_pack_install.py
builds and installs it): the registry fields, requirements.txt equal to pyproject's dependencies,
the pinned model-fetch the one packaging/model-fetch defines, and that distribution declaring
everything model_fetch imports."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import PROJECT_ROOT
from tests.runtime_imports import third_party_imports

PACK = PROJECT_ROOT / "custom_nodes" / "wan_serverless"
MODEL_FETCH_DIST = PROJECT_ROOT / "packaging" / "model-fetch" / "pyproject.toml"
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml"}


def toml(path) -> dict:
    return tomllib.loads(path.read_text())


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_registry_metadata_is_complete():
    meta = toml(PACK / "pyproject.toml")
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert project["name"] and project["description"] and re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] and project["requires-python"]
    assert project["urls"]["Repository"].startswith("https://")
    assert comfy["PublisherId"] and comfy["DisplayName"] and "Icon" in comfy  # "" is the registry's "none"
    assert comfy["requires-comfyui"].startswith(">=0.8.0")


def test_requirements_txt_is_pyprojects_dependencies():
    """ComfyUI-Manager installs requirements.txt, the registry reads pyproject.toml: one list."""
    lines = [line.strip() for line in (PACK / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == toml(PACK / "pyproject.toml")["project"]["dependencies"]


def test_the_pack_pins_the_model_fetch_this_repository_builds():
    version = toml(MODEL_FETCH_DIST)["project"]["version"]
    assert f"model-fetch=={version}" in toml(PACK / "pyproject.toml")["project"]["dependencies"]


def test_model_fetch_distribution_declares_what_model_fetch_imports():
    dist = toml(MODEL_FETCH_DIST)
    declared = names(dist["project"]["dependencies"])
    imported = third_party_imports(sorted((PROJECT_ROOT / "model_fetch").glob("*.py")))  # TYPE_CHECKING ones never run
    third_party = {DISTRIBUTION.get(m, m).replace("_", "-") for m in imported}
    assert third_party <= declared, f"model_fetch imports {sorted(third_party - declared)} not in {MODEL_FETCH_DIST}"
    # and the repository's own distribution (what .venv and the image install) has them too
    assert declared <= names(toml(PROJECT_ROOT / "pyproject.toml")["project"]["dependencies"])
    assert dist["tool"]["setuptools"]["package-dir"] == {"model_fetch": "../../model_fetch"}  # the code, not a copy
