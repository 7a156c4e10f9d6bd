"""`make gpu-kit`: everything the GPU run needs beyond the GPU machine's own packages, in one folder.

The GPU machine we can borrow has no network, takes at most 64 MiB of carried files and already holds
Python 3.12 with torch 2.11 (bench/gpu_machine.txt). The kit (``.gpukit/`` by default, ignored) holds:

* ``wheels/``: the pinned wheels of bench/gpu_kit.txt for CPython ``--python-version`` on manylinux
  x86-64 (downloaded once into ``.cache/gpukit/``, keyed by the list and the Python version);
* ``comfyui.tar.gz``: ComfyUI 0.8.0's code (worker.comfyui_home finds it), without tests;
* ``ComfyUI-GGUF.tar.gz``: city96's pack, exported from a local git copy (``--city96-git`` or
  ``$CITY96_GGUF_GIT``); never committed;
* ``project.tar.gz``: this project's tracked files as they are in the working tree;
* ``kit.json``: what is in it (versions, sizes, sha256).

bench/gpu_run.sh takes the kit on the GPU machine. ``--python-version 3.11`` builds the twin the
rehearsal (tests/test_gpu_kit_rehearsal.py) installs here. The build fails above ``--limit-mib``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "bench" / "gpu_kit.txt"
CACHE = ROOT / ".cache" / "gpukit"
DEFAULT_OUT = ROOT / ".gpukit"
LIMIT_MIB = 60
#: manylinux tags pip may match (it matches each exactly); the GPU machine's glibc is recent.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_35_x86_64")
COMFYUI_SKIP = {".git", "__pycache__", "tests", "tests-unit", ".github", ".ci"}


class KitError(RuntimeError):
    """The kit cannot be built as asked (missing source, wheel, or over the size limit)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    pure: bool = False  # take the py3-none-any wheel

    @property
    def stem(self) -> str:
        """How the name begins a wheel's file name (PEP 427: lower case, runs of -_. as _)."""
        return re.sub(r"[-_.]+", "_", self.name).lower() + "-" + self.version + "-"


def read_pins(path: Path = PINS) -> list[Pin]:
    pins = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line, _, comment = raw.partition("#")
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)\s*", line)
        if not m:
            raise KitError(f"{path.name}:{n}: expected NAME==VERSION, got {raw.strip()!r}")
        pins.append(Pin(m.group(1), m.group(2), comment.strip().startswith("pure")))
    return pins


def wheels(pins: list[Pin], python_version: str, log=print) -> Path:
    """The pinned wheels for CPython ``python_version`` (downloaded once, cached by list and version)."""
    key = hashlib.sha256(PINS.read_bytes() + python_version.encode()).hexdigest()[:12]
    tag = "cp" + python_version.replace(".", "")
    folder = CACHE / f"wheels-{tag}-{key}"
    if (folder / ".complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp", "-d", str(folder)]
    groups = {False: [p for p in pins if not p.pure], True: [p for p in pins if p.pure]}
    for pure, group in groups.items():
        if not group:
            continue
        platforms = ["any"] if pure else list(PLATFORMS)
        cmd = base + [a for p in platforms for a in ("--platform", p)] + [f"{p.name}=={p.version}" for p in group]
        log(f"downloading {len(group)} {'pure ' if pure else ''}wheels for {tag}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KitError(f"pip download failed for {tag}:\n{proc.stderr[-2000:]}")
    for p in pins:
        found = [f for f in folder.glob("*.whl") if f.name.lower().startswith(p.stem)]
        if len(found) != 1 or (p.pure and not found[0].name.endswith("-none-any.whl")):
            raise KitError(f"{p.name}=={p.version}: expected one {'pure ' if p.pure else ''}wheel for {tag}, "
                           f"found {[f.name for f in found]}")
    (folder / ".complete").write_text(key)
    return folder


def _tar(dest: Path, files: list[tuple[Path, str]]) -> None:
    """Write ``(path, name in archive)`` pairs into a reproducible-enough tar.gz."""
    with tarfile.open(dest, "w:gz", compresslevel=9) as tar:
        for path, name in files:
            tar.add(path, arcname=name, recursive=False)


def comfyui_archive(dest: Path) -> str:
    """ComfyUI 0.8.0's code (no tests, no caches) into ``dest``; returns its version."""
    from worker import comfyui_home

    src = comfyui_home.find()
    if src is None:
        raise KitError(comfyui_home.missing_message())
    version = comfyui_home.version_of(src)
    if version != comfyui_home.PINNED_VERSION:
        raise KitError(f"ComfyUI at {src} is {version}; the kit needs {comfyui_home.PINNED_VERSION}")
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in COMFYUI_SKIP)
        rel = Path(dirpath).relative_to(src)
        files.append((Path(dirpath), str(Path("comfyui") / rel)))
        files += [(Path(dirpath) / f, str(Path("comfyui") / rel / f)) for f in sorted(filenames)
                  if not f.endswith(".pyc")]
    _tar(dest, files)
    return version


def city96_archive(git_dir: Path, dest: Path) -> str:
    """city96's ComfyUI-GGUF at HEAD of a local git copy, as ComfyUI-GGUF/ in ``dest``; returns the commit."""
    git = ["git", "--git-dir", str(git_dir)]
    try:
        commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        data = subprocess.run(git + ["archive", "--format=tar.gz", "--prefix=ComfyUI-GGUF/", "HEAD"], check=True,
                              capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KitError(f"--city96-git {git_dir}: not a readable git copy of ComfyUI-GGUF ({exc})") from exc
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if "ComfyUI-GGUF/nodes.py" not in tar.getnames():
            raise KitError(f"--city96-git {git_dir}: no nodes.py at HEAD; is it city96/ComfyUI-GGUF?")
    dest.write_bytes(data)
    return commit


def project_archive(dest: Path) -> str:
    """The project's tracked files, as they are in the working tree, under project/; returns HEAD."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True).stdout
    names = sorted(n for n in listed.decode().split("\0") if n and (ROOT / n).is_file())
    _tar(dest, [(ROOT / n, f"project/{n}") for n in names])
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def build(out: Path = DEFAULT_OUT, python_version: str = "3.12", city96_git: Path | None = None,
          limit_mib: float = LIMIT_MIB, log=print) -> dict:
    """Build the kit in ``out`` (replacing it); return kit.json's content. Raises KitError over the limit."""
    t0 = time.monotonic()
    pins = read_pins()
    source = wheels(pins, python_version, log)
    shutil.rmtree(out, ignore_errors=True)
    (out / "wheels").mkdir(parents=True)
    for whl in sorted(source.glob("*.whl")):
        shutil.copy2(whl, out / "wheels" / whl.name)
    kit: dict = {"python_version": python_version, "pins": [f"{p.name}=={p.version}" for p in pins],
                 "pins_sha256": _sha256(PINS)}
    kit["comfyui_version"] = comfyui_archive(out / "comfyui.tar.gz")
    kit["project"] = project_archive(out / "project.tar.gz")
    if city96_git is not None:
        kit["city96_commit"] = city96_archive(city96_git, out / "ComfyUI-GGUF.tar.gz")
    else:
        kit["city96_commit"] = None
        log("!!! no city96 ComfyUI-GGUF copy given (--city96-git or CITY96_GGUF_GIT): its variant will be skipped")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    kit["files"] = {str(p.relative_to(out)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    total = sum(f["size"] for f in kit["files"].values())
    kit["total_bytes"] = total
    kit["build_seconds"] = round(time.monotonic() - t0, 1)
    (out / "kit.json").write_text(json.dumps(kit, indent=2) + "\n")
    parts = {"wheels": sum(f["size"] for n, f in kit["files"].items() if n.startswith("wheels/"))}
    parts.update({n: f["size"] for n, f in kit["files"].items() if not n.startswith("wheels/")})
    for name, size in parts.items():
        log(f"  {name:24s} {size / 2**20:7.2f} MiB")
    log(f"kit {out} (cp{python_version.replace('.', '')}): {total / 2**20:.2f} MiB in {len(files)} files, "
        f"limit {limit_mib:g} MiB, built in {kit['build_seconds']} s")
    if total > limit_mib * 2**20:
        raise KitError(f"kit is {total / 2**20:.2f} MiB, over the {limit_mib:g} MiB limit (the carry limit is "
                       "64 MiB with the working tree)")
    return kit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the kit folder (default .gpukit)")
    p.add_argument("--python-version", default="3.12", help="CPython version of the wheels (the machine's: 3.12)")
    p.add_argument("--city96-git", type=Path, default=None,
                   help="a local git copy of city96/ComfyUI-GGUF (default: $CITY96_GGUF_GIT)")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = p.parse_args(argv)
    city96 = args.city96_git or (Path(os.environ["CITY96_GGUF_GIT"]) if os.environ.get("CITY96_GGUF_GIT") else None)
    try:
        build(args.out, args.python_version, city96, args.limit_mib)
    except KitError as exc:
        print(f"gpu-kit: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
