"""Crash: SIGKILL `model-fetch pull` at random moments (seeded), start a new pull each time. The final name
never holds wrong bytes (checked after every kill), the last pull completes, and the kills cost little.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from model_fetch import _journal as journal
from model_fetch._store import journal_path, part_path
from tests.fileserver import FileServer
from tests.reliability.helpers import (GiB, MiB, Proc, child_env, cli_command, leftovers, run_cli, sha256_of, table,
                                       verdict, write_manifest, write_section)

pytestmark = pytest.mark.slow
KILLS = 20
SEED = 20240611
RATE = 6 * MiB  # bytes/s per connection while killing: 8 connections, 48 MiB/s, a whole pull ~21 s
KILL_AFTER = (0.1, 2.0)  # seconds after the process started
MAX_RATIO = 1.5


def journaled(final: Path, size: int) -> float:
    """Fraction of the file journaled (complete chunks and the written part of chunks in flight); 1.0 once placed."""
    if final.exists():
        return 1.0
    header, done, partial = journal.read_progress(journal_path(final))
    return journal.done_bytes(header, done, partial) / size if header is not None and part_path(final).exists() else 0.0


def state_after_kill(final: Path, before: float, after: float) -> str:
    """Where the killed pull was, judged from disk."""
    if final.exists():
        return "file placed"
    if not part_path(final).exists():
        return "before .part"
    if after >= 1.0:
        return "all chunks journaled"
    return "downloading" if after > before else "starting (no new chunk)"


def test_sigkill_at_random_moments_never_places_wrong_bytes(gib_model: tuple[Path, str], scratch: Path) -> None:
    root, sha = gib_model
    rng = random.Random(SEED)
    models = scratch / "models"
    final = models / "diffusion_models" / "model.bin"
    kills: list[tuple[float, str, float]] = []  # (delay, state, journaled fraction)
    wrong: list[str] = []
    spawned = 0
    started = time.monotonic()
    with FileServer(root, rate_limit=RATE) as server:
        manifest = write_manifest(scratch / "manifest.json", [{
            "name": "model.bin", "directory": "diffusion_models", "url": f"{server.url}/model.bin", "hash": sha,
            "size": GiB}])
        env = child_env(models, manifest)  # default settings: 8 MiB chunks, 8 connections
        while len(kills) < KILLS and spawned < 3 * KILLS:
            delay = rng.uniform(*KILL_AFTER)
            before = journaled(final, GiB)
            proc = Proc(cli_command("pull", "--json"), env, scratch / "logs")
            spawned += 1
            try:
                proc.popen.wait(delay)
            except subprocess.TimeoutExpired:
                proc.popen.send_signal(signal.SIGKILL)
            run = proc.finish(30, where="crash pull")
            if run.returncode == -signal.SIGKILL:
                after = journaled(final, GiB)
                kills.append((delay, state_after_kill(final, before, after), after))
                if final.exists() and sha256_of(final) != sha:
                    wrong.append(f"after kill {len(kills)}")
                continue
            assert run.returncode == 0, run.stderr  # finished before its kill moment
        server.rate_limit = None  # the last pull at full speed
        last = run_cli("pull", "--json", env=env, logs=scratch / "logs", timeout=300)
        server.wait_idle()
        ratio = server.counters.bytes_by_path["/model.bin"] / GiB
    elapsed = time.monotonic() - started
    placed_ok = final.is_file() and sha256_of(final) == sha
    if final.exists() and not placed_ok:
        wrong.append("after the last pull")
    stray = leftovers(final.parent, "model.bin")
    ok = {
        f"{KILLS} kills": len(kills) == KILLS,
        "never wrong bytes under the final name": not wrong,
        "last pull completes": last.returncode == 0 and placed_ok and not stray,
        f"bytes served <= {MAX_RATIO}x": ratio <= MAX_RATIO,
    }
    states = Counter(state for _, state, _ in kills)
    summary = table(["kills", "pulls started", "killed: " + ", ".join(states), "wrong file seen", "last pull",
                     "bytes served / size", "total time", "claim"],
                    [[len(kills), spawned + 1, ", ".join(str(n) for n in states.values()), len(wrong),
                      f"exit {last.returncode}, {last.json()['files'][0]['action'] if last.returncode == 0 else last.error_line}",
                      f"{ratio:.3f}", f"{elapsed:.0f} s", verdict(all(ok.values()))]])
    detail = table(["kill", "after", "state on disk after the kill", "journaled"],
                   [[i + 1, f"{d:.2f} s", s, f"{f:.0%}"] for i, (d, s, f) in enumerate(kills)])
    write_section("crash", "Crash: 20 SIGKILLs during pulls of a 1 GiB model", f"""
One `model-fetch pull` at a time; each is sent SIGKILL at a random moment (`random.Random({SEED})`, uniform
{KILL_AFTER[0]}–{KILL_AFTER[1]} s after it started) and the next pull starts at once. Server rate limit
{RATE // MiB} MiB/s per connection while killing (8 connections), none for the last pull; default settings
(8 MiB chunks). After every kill the final name must be absent or hold the right sha256. The journal records
chunks in flight every 1 MiB, so a kill loses at most about 1 MiB per connection, whatever the chunk size. Claim: {KILLS} kills, never a wrong file, the last pull completes,
bytes served <= {MAX_RATIO}x the file.

{summary}

{detail}
""")
    assert all(ok.values()), f"{ok}; wrong={wrong}; last={last.stderr[-500:]}"
