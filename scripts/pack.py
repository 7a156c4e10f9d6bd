"""`make pack`: the node pack as artists install it, and the model-fetch wheel it requires.

1. a tool environment with comfy-cli (requirements/pack.lock.txt) in .cache/pack-tools, made once;
2. ``uv build --wheel packaging/model-fetch``: dist/model_fetch-<version>-py3-none-any.whl, built
   from the repository's model_fetch/ (no copy of its code is kept anywhere);
3. ``comfy node validate`` in custom_nodes/wan_serverless: the registry's checks; any warning fails;
4. ``comfy node pack`` there (git-tracked files): dist/wan_serverless.zip.

Install both into a ComfyUI as docs/editor.md ("Install into your ComfyUI") says. Offline apart from
PyPI (the tool environment and the wheel's build backend come through uv's cache).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "custom_nodes" / "wan_serverless"
DIST_SRC = ROOT / "packaging" / "model-fetch"
TOOLS = ROOT / ".cache" / "pack-tools"
LOCK = ROOT / "requirements" / "pack.lock.txt"
ARCHIVE = "wan_serverless.zip"
UV = Path(sys.executable).with_name("uv")


def run(cmd: list[str], cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=True, stdin=subprocess.DEVNULL, **kw)


def tools() -> Path:
    """The ``comfy`` executable of the tool environment, installed from the lock when it changed."""
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    stamp = TOOLS / ".lock-sha256"
    if not stamp.is_file() or stamp.read_text() != want:
        shutil.rmtree(TOOLS, ignore_errors=True)
        run([str(UV), "venv", "-q", "--python", sys.executable, str(TOOLS)])
        run([str(UV), "pip", "install", "-q", "--python", str(TOOLS / "bin" / "python"), "-r", str(LOCK)])
        stamp.write_text(want)
    return TOOLS / "bin" / "comfy"


def comfy(exe: Path, *args: str) -> str:
    """``comfy --skip-prompt node <args>`` in the pack folder: no prompt, no telemetry, its config
    (~/.config/comfy-cli) kept in the tool environment."""
    home = TOOLS / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "RUFF_CACHE_DIR": str(TOOLS / "ruff-cache"),  # validate runs ruff
           "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}"}
    out = run([str(exe), "--skip-prompt", "--no-enable-telemetry", "node", *args], cwd=PACK, env=env,
              capture_output=True, text=True)
    return out.stdout + out.stderr


def build_wheel(dist: Path) -> Path:
    run([str(UV), "build", "-q", "--wheel", "--out-dir", str(dist), str(DIST_SRC)])
    for scratch in [DIST_SRC / "build", *DIST_SRC.glob("*.egg-info")]:
        shutil.rmtree(scratch, ignore_errors=True)
    version = tomllib.loads((DIST_SRC / "pyproject.toml").read_text())["project"]["version"]
    return dist / f"model_fetch-{version}-py3-none-any.whl"


def pack(dist: Path) -> Path:
    exe = tools()
    report = comfy(exe, "validate")
    print(report.strip())
    problems = [line for line in report.splitlines() if "warning" in line.lower() or "error" in line.lower()]
    if problems:
        raise SystemExit(f"comfy node validate: {'; '.join(problems)}")
    made = PACK / "node.zip"
    try:
        print(comfy(exe, "pack").strip())
        archive = dist / ARCHIVE
        shutil.move(made, archive)
    finally:
        made.unlink(missing_ok=True)
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    if not UV.is_file():
        print(f"!!! uv not found at {UV}: run `make pack` (its `make setup` installs uv into .venv)", file=sys.stderr)
        return 1
    dist = args.dist.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    try:
        wheel = build_wheel(dist)
        archive = pack(dist)
    except subprocess.CalledProcessError as exc:
        print(f"!!! {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})\n{exc.stdout or ''}{exc.stderr or ''}",
              file=sys.stderr)
        return 1
    print(f"{archive.relative_to(ROOT) if archive.is_relative_to(ROOT) else archive}\n"
          f"{wheel.relative_to(ROOT) if wheel.is_relative_to(ROOT) else wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
