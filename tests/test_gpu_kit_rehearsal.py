"""The one-call GPU run, rehearsed here on CPU: a fresh environment holding only the GPU machine's
packages (bench/gpu_machine.txt: torch 2.11 and the rest, Python 3.11 here for the machine's 3.12),
the kit's cp311 twin (`python -m bench.gpu_kit --python-version 3.11`, same pins as `make gpu-kit`),
and bench/gpu_run.sh in smoke mode, with no network (a new network namespace, or dead proxies where
namespaces are refused). Phase timings are printed (`pytest -s`); docs/benchmarks.md projects them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_kit

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MACHINE = ROOT / "bench" / "gpu_machine.txt"
UV = Path(sys.executable).parent / "uv"
MIB = 2**20


def machine_names() -> set[str]:
    names: set[str] = set()
    for line in MACHINE.read_text().splitlines():
        if line.startswith("# machine-has:"):
            names |= set(line.split(":", 1)[1].split())
    return names


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def machine_env(venv: Path) -> Path:
    """A fresh venv with the machine's pins, less what the resolver added that the machine lacks."""
    subprocess.run([str(UV), "venv", "-q", "--seed", "--python", "3.11", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(python), "-r", str(MACHINE)], check=True)
    frozen = subprocess.run([str(UV), "pip", "freeze", "--python", str(python)], check=True, capture_output=True,
                            text=True).stdout.split()
    extra = sorted({norm(line.split("==")[0]) for line in frozen} - machine_names() - {"pip"})
    if extra:
        subprocess.run([str(UV), "pip", "uninstall", "-q", "--python", str(python), *extra], check=True)
    return python


def offline_prefix() -> tuple[list[str], str]:
    """How to run a command with no network: a new network namespace with loopback up, or (where user
    namespaces are refused) proxies pointing at a dead port."""
    if shutil.which("unshare") and shutil.which("ip") and \
            subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"], "netns"
    return [], "dead-proxy"


@pytest.mark.timeout(2400)
def test_the_gpu_run_rehearsed_offline_in_the_machine_s_environment(tmp_path):
    city96 = os.environ.get("CITY96_GGUF_GIT")
    kits = {}
    for version in ("3.12", "3.11"):  # the machine's kit (size), and the twin this Python can install
        out = tmp_path / f"kit-{version}"
        proc = subprocess.run([sys.executable, "-m", "bench.gpu_kit", "--python-version", version, "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        print(proc.stdout)
        kits[version] = json.loads((out / "kit.json").read_text())
    k312, k311 = kits["3.12"], kits["3.11"]
    assert k312["pins"] == k311["pins"] == [f"{p.name}=={p.version}" for p in gpu_kit.read_pins()]
    wheels312 = sorted(n for n in k312["files"] if n.startswith("wheels/"))
    assert len(wheels312) == len(k312["pins"]) and all("cp311-cp311" not in n for n in wheels312)
    # the carry limit is 64 MiB for the kit and the working tree together
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((ROOT / n.decode()).stat().st_size for n in tracked if n and (ROOT / n.decode()).is_file())
    assert k312["total_bytes"] <= gpu_kit.LIMIT_MIB * MIB, k312["total_bytes"] / MIB
    assert k312["total_bytes"] + tree <= 64 * MIB

    python = machine_env(tmp_path / "machine")
    probe = subprocess.run([str(python), "-c", "import torch, transformers, aiohttp; print(torch.__version__)"],
                           capture_output=True, text=True)
    assert probe.stdout.startswith("2.11.0"), probe.stderr
    for missing in ("pydantic", "gguf", "av", "sqlalchemy", "comfyui_frontend_package"):  # the kit's job
        assert subprocess.run([str(python), "-c", f"import {missing}"], capture_output=True).returncode != 0, missing

    prefix, mode = offline_prefix()
    if mode == "netns":  # the namespace has loopback alone
        links = subprocess.run(prefix + ["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
    dead = "http://127.0.0.1:9"
    out = tmp_path / "out"
    variants = "ours city96" if city96 else "ours"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "COMFYUI_DIR"))}  # none there
    env = {**env, "OUT": str(out), "GPU_RUN_SMOKE": "1", "PYTHON": str(python), "GPU_RUN_BUDGET_S": "2000",
           "GPU_RUN_WORK": str(tmp_path / "work"), "GPU_RUN_VARIANTS": variants,
           "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead,
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost", "PIP_NO_INDEX": "1",
           "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(prefix + ["bash", str(ROOT / "bench" / "gpu_run.sh"), str(tmp_path / "kit-3.11")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2300)
    print(f"network isolation: {mode}\n" + (out / "phases.txt").read_text())
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    device = (out / "device.txt").read_text()
    assert "torch: 2.11.0" in device and "python: 3.11" in device and 'kit comfyui_version: "0.8.0"' in device
    phases = (out / "phases.txt").read_text()
    for phase in ("install wheels (--no-index)", "unpack ComfyUI, project, city96", "generate stand-ins",
                  "variant ours (exit 0)", "total"):
        assert phase in phases, phases
    results = {r["variant"]: r for r in json.loads((out / "gpu.json").read_text())["results"]}
    assert set(results) == set(variants.split())
    for name, r in results.items():
        assert r["ok"] and r["steady_step_s"] > 0 and r["total_s"] > 0 and r["load_s"] is not None, (name, r)
    table = (out / "gpu.md").read_text()
    assert "| ours | yes |" in table and ("| city96 | yes |" in table or not city96)
    # the docs section takes a GPU run's results only: a smoke run's file is refused, docs untouched
    refused = subprocess.run([sys.executable, "-m", "bench.gpu", "--from-results", str(out / "gpu.json")], cwd=ROOT,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "a smoke run's results" in refused.stderr, refused.stderr


def test_a_kit_over_its_limit_fails_the_build_naming_its_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_kit", "--python-version", "3.11", "--out",
                           str(tmp_path / "kit"), "--limit-mib", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 1
    assert re.search(r"gpu-kit: kit is \d+\.\d\d MiB, over the 1 MiB limit", proc.stderr), proc.stderr
