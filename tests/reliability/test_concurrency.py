"""Concurrency: 8 `model-fetch pull` processes pull the same 1 GiB model into one models root at once,
with normal locking and with `fcntl.flock`/`lockf` made no-ops in every process. Each exits 0, one
correct file results, nothing is left behind, and the server sends the bytes about once.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fileserver import FileServer
from tests.reliability.helpers import (GiB, Proc, child_env, cli_command, leftovers, sha256_of, table, verdict,
                                       write_manifest, write_section)

pytestmark = pytest.mark.slow
PROCESSES = 8
MAX_RATIO = 1.05


def pull_together(server: FileServer, sha: str, scratch: Path, no_flock: bool) -> dict:
    """Start PROCESSES pulls of one model at once; what they did and what they left."""
    mode = "flock no-op" if no_flock else "normal"
    models = scratch / ("models-noflock" if no_flock else "models")
    manifest = write_manifest(scratch / "manifest.json", [{
        "name": "model.bin", "directory": "diffusion_models", "url": f"{server.url}/model.bin", "hash": sha,
        "size": GiB}])
    env = child_env(models, manifest)
    server.reset_counters()
    started = time.monotonic()
    procs = [Proc(cli_command("pull", "--json", no_flock=no_flock), env, scratch / "logs") for _ in range(PROCESSES)]
    runs = [p.finish(600, where=f"concurrency {mode}") for p in procs]
    wall = time.monotonic() - started
    server.wait_idle()
    folder = models / "diffusion_models"
    final = folder / "model.bin"
    actions = Counter(r.json()["files"][0]["action"] if r.returncode == 0 else f"exit {r.returncode}" for r in runs)
    flock_calls = sum(int(m) for r in runs for m in re.findall(r"no-op flock calls: (\d+)", r.stderr))
    result = {
        "mode": mode,
        "exit_codes": sorted(r.returncode for r in runs),
        "errors": [r.error_line or r.stderr[-300:] for r in runs if r.returncode != 0],
        "actions": actions,
        "correct": final.is_file() and sha256_of(final) == sha,
        "files": sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [],
        "parts": [str(p) for p in models.rglob("*.part*")],
        "leases": [str(p) for p in models.rglob("*.lease*")],
        "ratio": server.counters.bytes_by_path["/model.bin"] / GiB,
        "wall": wall,
        "peak_connections": server.counters.peak_connections,
        "flock_calls": flock_calls if no_flock else "-",
        "stray": leftovers(folder, "model.bin"),
    }
    shutil.rmtree(models, ignore_errors=True)  # 1 GiB: free it before the next mode
    return result


def test_eight_processes_one_model(gib_model: tuple[Path, str], scratch: Path) -> None:
    root, sha = gib_model
    with FileServer(root) as server:
        results = [pull_together(server, sha, scratch, no_flock) for no_flock in (False, True)]
    rows, failures = [], []
    for r in results:
        ok = {
            "every process exits 0": r["exit_codes"] == [0] * PROCESSES,
            "one correct file": r["correct"] and r["files"] == ["model.bin"],
            "exactly one downloader": r["actions"].get("downloaded") == 1,
            "no .part, journal or lease left": not r["parts"] and not r["leases"] and not r["stray"],
            f"bytes served <= {MAX_RATIO}x": r["ratio"] <= MAX_RATIO,
        }
        failures += [f"{r['mode']}: {claim} ({r})" for claim, good in ok.items() if not good]
        rows.append([r["mode"], PROCESSES, " ".join(map(str, r["exit_codes"])),
                     ", ".join(f"{n} {a}" for a, n in sorted(r["actions"].items())),
                     "yes" if r["correct"] else "**no**", len(r["parts"]) + len(r["stray"]), f"{r['ratio']:.3f}",
                     f"{r['wall']:.1f} s", r["peak_connections"], r["flock_calls"], verdict(all(ok.values()))])
    write_section("concurrency", "Concurrency: 8 processes, one 1 GiB model", f"""
Eight `model-fetch pull` processes start at once against one models root and one loopback server
(`--json`, default 8 connections, 8 MiB chunks). *flock no-op*: each process runs the CLI through a wrapper
that replaces `fcntl.flock` and `fcntl.lockf` with counting no-ops, as on a network filesystem where
locks do nothing; the lease (`O_EXCL` file + heartbeat) never uses them. Claim: every process exits 0,
exactly one file with the right sha256, no `.part`/journal/lease left, server bytes <= {MAX_RATIO}x the file.

{table(["mode", "processes", "exit codes", "actions", "sha256 ok", "leftovers", "bytes served / size",
        "wall time", "peak connections", "flock calls made", "claim"], rows)}
""")
    assert not failures, "\n".join(failures)
