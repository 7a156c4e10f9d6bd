"""Server faults: each injected fault ends, through the `model-fetch pull` CLI, with the right file (exit 0)
or one clear `error:` line and a non-zero exit — never a wrong file under the final name.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fileserver import Fault, FileServer, make_file
from tests.reliability.helpers import (MiB, child_env, leftovers, run_cli, sha256_of, table, verdict, write_manifest,
                                       write_section)

pytestmark = pytest.mark.slow
SIZE = 48 * MiB + 4321
PATH = "/model.bin"
STALL_TIMEOUT = 2
SETTINGS = {"MODEL_FETCH_CHUNK_MB": "4", "MODEL_FETCH_STALL_TIMEOUT": str(STALL_TIMEOUT),
            "MODEL_FETCH_MAX_ATTEMPTS": "4"}
MID = 20 * MiB + 12345  # a byte in the middle of chunk 5


@dataclass(frozen=True)
class Case:
    name: str
    inject: Callable[[FileServer], object]
    expect: str  # "file" | "error"
    min_seconds: float = 0.0  # a retry delay the pull must have honoured
    max_ratio: float | None = None  # bytes served / size


CASES = [
    Case("reset mid-body (3 connections)", lambda s: s.faults.add(PATH, Fault.RESET_MID_BODY, after_bytes=MiB, times=3),
         "file", max_ratio=1.1),
    Case("reset mid-body, always at the same byte",
         lambda s: s.faults.add(PATH, Fault.RESET_MID_BODY, offset=MID), "error"),
    Case("truncated body, always at the same byte",
         lambda s: s.faults.add(PATH, Fault.TRUNCATE, offset=MID), "error"),
    Case("200 for every range request (no Range support)", lambda s: s.faults.add(PATH, Fault.IGNORE_RANGE), "file"),
    Case("200 for chunk ranges after a 206 probe",
         lambda s: s.faults.add(PATH, Fault.IGNORE_RANGE, predicate=lambda r: r.range != "bytes=0-0"), "file"),
    Case("429, Retry-After: 2 (twice)", lambda s: s.faults.add(PATH, Fault.STATUS, status=429, retry_after=2, times=2),
         "file", min_seconds=2, max_ratio=1.01),
    Case("503, Retry-After: 1 (3 times)", lambda s: s.faults.add(PATH, Fault.STATUS, status=503, retry_after=1, times=3),
         "file", min_seconds=1, max_ratio=1.01),
    Case("503, Retry-After: 1 (always)", lambda s: s.faults.add(PATH, Fault.STATUS, status=503, retry_after=1),
         "error", min_seconds=3),
    Case("truncated body (3 connections)", lambda s: s.faults.add(PATH, Fault.TRUNCATE, after_bytes=MiB, times=3),
         "file", max_ratio=1.1),
    Case("wrong bytes (once): one download, then integrity_error (the next pull starts afresh)",
         lambda s: s.faults.add(PATH, Fault.WRONG_BYTES, offset=MID, length=4096, times=1), "error", max_ratio=1.01),
    Case("wrong bytes (always)", lambda s: s.faults.add(PATH, Fault.WRONG_BYTES, offset=MID, length=4096), "error",
         max_ratio=1.01),
    Case(f"stalled connection (once, stall timeout {STALL_TIMEOUT} s)",
         lambda s: s.faults.add(PATH, Fault.STALL, after_bytes=MiB, times=1), "file", min_seconds=STALL_TIMEOUT,
         max_ratio=1.1),
    Case("stalled connection (every chunk)",
         lambda s: s.faults.add(PATH, Fault.STALL, predicate=lambda r: r.range != "bytes=0-0"), "error",
         min_seconds=STALL_TIMEOUT),
]


def test_server_faults_end_with_the_file_or_a_clear_error(scratch: Path) -> None:
    served = scratch / "served"
    sha = make_file(served / "model.bin", SIZE, seed=11)
    rows, failures = [], []
    for i, case in enumerate(CASES):
        models = scratch / f"models-{i}"
        final = models / "loras" / "model.bin"
        with FileServer(served) as server:  # a fresh server per case: stop() also ends stalled connections
            manifest = write_manifest(scratch / "manifest.json", [{
                "name": "model.bin", "directory": "loras", "url": server.url + PATH, "hash": sha, "size": SIZE}])
            case.inject(server)
            run = run_cli("pull", env=child_env(models, manifest, **SETTINGS), logs=scratch / "logs", timeout=90)
            sent = server.counters.bytes_by_path[PATH]
        placed = final.is_file()
        right = placed and sha256_of(final) == sha
        if case.expect == "file":
            ok = run.returncode == 0 and right and not leftovers(final.parent, "model.bin")
            outcome = "right file" if right else ("**wrong file**" if placed else "no file")
        else:
            ok = run.clean_failure and not placed
            outcome = ("clear error: " + run.error_line.removeprefix("error: ")[:110]) if run.clean_failure else (
                "**killed after 90 s**" if run.returncode < 0 else f"**unclear failure** {run.stderr[-200:]!r}")
        ok = ok and (not placed or right) and run.seconds >= case.min_seconds
        ok = ok and (case.max_ratio is None or sent <= case.max_ratio * SIZE)
        if not ok:
            failures.append(f"{case.name}: exit {run.returncode}, {outcome}, {run.seconds:.1f} s, "
                            f"{sent / SIZE:.2f}x\n{run.stderr[-1500:]}")
        rows.append([case.name, f"`{case.expect}`", outcome, run.returncode, f"{sent / MiB:.1f} MiB ({sent / SIZE:.2f}x)",
                     f"{run.seconds:.1f}", verdict(ok)])
        shutil.rmtree(models, ignore_errors=True)
    write_section("faults", "Server faults", f"""
`model-fetch pull` (CLI process) of a {SIZE / MiB:.1f} MiB model with a pinned sha256 from the loopback server,
one fault injected per row (`tests/fileserver_faults.py`); `MODEL_FETCH_CHUNK_MB=4`,
`MODEL_FETCH_STALL_TIMEOUT={STALL_TIMEOUT}`, `MODEL_FETCH_MAX_ATTEMPTS=4`, 8 connections. Claim: the expected
outcome — the right file and exit 0, or one `error:` line and a non-zero exit — and never a file with wrong
bytes under the final name; retries honour `Retry-After` and the stall timeout (seconds >= the delay).

{table(["fault", "expected", "outcome", "exit", "bytes served", "seconds", "claim"], rows)}
""")
    assert not failures, "\n\n".join(failures)
