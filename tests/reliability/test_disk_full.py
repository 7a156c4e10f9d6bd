"""Disk full, on a real small filesystem (tmpfs, else a loop-mounted ext4): (a) a model that does not fit is
refused before any byte is downloaded, naming need, free space and folder; (b) when another writer fills the
filesystem during a pull, the pull stops with a clear error and `model-fetch gc --partials` leaves no `.part`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_fetch import human_bytes
from model_fetch._store import part_path
from tests.fileserver import FileServer, make_file
from tests.reliability.helpers import (KiB, MiB, Proc, child_env, cli_command, run_cli, sha256_of, table, verdict,
                                       write_manifest, write_section)

pytestmark = pytest.mark.slow
FS_MB = 64


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[tuple[Path, str]]:
    """Mount a ``size_mb`` filesystem at ``where`` (tmpfs, else ext4 on a loop device); always unmounted."""
    where.mkdir(parents=True, exist_ok=True)
    tried = _sh("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where))
    kind = "tmpfs"
    if tried.returncode != 0:
        image = where.with_name(where.name + ".img")
        with open(image, "wb") as f:
            f.truncate(size_mb * MiB)
        made = _sh("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        loop = _sh("mount", "-o", "loop", str(image), str(where)) if made.returncode == 0 else made
        if loop.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem here (tmpfs: {tried.stderr.strip() or tried.returncode}; "
                        f"loop ext4: {loop.stderr.strip() or loop.returncode})")
        kind = "ext4 (loop)"
    try:
        yield where, kind
    finally:
        if _sh("umount", str(where)).returncode != 0:
            _sh("umount", "-l", str(where))


def fill(path: Path) -> int:
    """Another writer: zeros to ``path`` until the filesystem is full (1 MiB, then 4 KiB writes); bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for block in (b"\0" * MiB, b"\0" * (4 * KiB)):
            while True:
                try:
                    written += f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return written


def does_not_fit(scratch: Path) -> tuple[list[list[object]], list[str]]:
    """(a) a 128 MiB model for a 64 MiB filesystem, with and without its size in the manifest."""
    served = scratch / "served-a"
    size = 2 * FS_MB * MiB
    sha = make_file(served / "model.bin", size, seed=5)
    rows, failures = [], []
    with small_filesystem(scratch / "small-a", FS_MB) as (mount, kind), FileServer(served) as server:
        folder = mount / "models" / "loras"
        for declared in (True, False):
            manifest = write_manifest(scratch / "manifest.json", [{
                "name": "model.bin", "directory": "loras", "url": f"{server.url}/model.bin", "hash": sha,
                **({"size": size} if declared else {})}])
            server.reset_counters()
            run = run_cli("pull", env=child_env(mount / "models", manifest), logs=scratch / "logs", timeout=60)
            server.wait_idle()
            sent = server.counters.bytes_sent
            line = run.error_line
            named = all(s in line for s in ("'model.bin'", f"needs {human_bytes(size)}", str(folder), " free"))
            ok = (run.returncode == 1 and run.clean_failure and named and not part_path(folder / "model.bin").exists()
                  and sent <= (0 if declared else 1))
            if not ok:
                failures.append(f"(a) declared={declared}: exit {run.returncode}, sent {sent}, {run.stderr[-800:]}")
            rows.append(["a: does not fit, size " + ("in the manifest" if declared else "from the server"),
                         f"{size // MiB} MiB model, {kind} {FS_MB} MiB", run.returncode, _shown(line, scratch),
                         f"{sent} B" + ("" if declared else " (the size probe)"), f"{run.seconds:.1f}", verdict(ok)])
    return rows, failures


def fills_up(scratch: Path) -> tuple[list[list[object]], list[str]]:
    """(b) another writer fills the filesystem while a 40 MiB pull runs; then a retry, gc, and a pull with space."""
    served = scratch / "served-b"
    size = 40 * MiB
    sha = make_file(served / "model.bin", size, seed=6)
    rows, failures = [], []
    with small_filesystem(scratch / "small-b", FS_MB) as (mount, kind), FileServer(served, rate_limit=MiB) as server:
        models = mount / "models"
        final = models / "loras" / "model.bin"
        manifest = write_manifest(scratch / "manifest.json", [{
            "name": "model.bin", "directory": "loras", "url": f"{server.url}/model.bin", "hash": sha, "size": size}])
        # 32 KiB chunks: the journal outgrows its first 4 KiB page about 3/4 into the download
        env = child_env(models, manifest, MODEL_FETCH_CHUNK_MB=str(32 / 1024), MODEL_FETCH_MIN_FREE_MB="0")
        proc = Proc(cli_command("pull"), env, scratch / "logs")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.popen.poll() is None:
            part = part_path(final)
            if part.exists() and part.stat().st_blocks * 512 >= size:  # preallocated: now fill the rest
                break
            time.sleep(0.02)
        filled = fill(mount / "other-writer.bin")
        run = proc.finish(120, where="disk-full pull")
        sent = server.counters.bytes_by_path["/model.bin"]
        wrong = final.exists() and sha256_of(final) != sha
        fill(mount / "other-writer-2.bin")  # the pages the failed pull gave back, too
        retry = run_cli("pull", env=env, logs=scratch / "logs", timeout=120)  # a restarted worker, disk still full
        gc = run_cli("gc", "--partials", "--json", env=env, logs=scratch / "logs", timeout=60)
        parts = sorted(str(p.relative_to(mount)) for p in mount.rglob("*.part*"))
        leases = sorted(str(p.relative_to(mount)) for p in mount.rglob("*.lease*"))
        checks = {
            "(b) the pull fails clearly, nothing placed": run.clean_failure and not final.exists() and not wrong,
            "(b) a retry on the full disk fails clearly": retry.clean_failure and not final.exists(),
            "(b) after gc: no .part, journal or lease": gc.returncode == 0 and not parts and not leases,
        }
        rows.append([f"b: another writer fills the disk during the pull (+{filled / MiB:.1f} MiB)",
                     f"{size // MiB} MiB model, {kind} {FS_MB} MiB, 32 KiB chunks", run.returncode,
                     _shown(run.error_line or run.stderr.strip()[-200:], scratch),
                     f"{sent / MiB:.1f} MiB ({sent / size:.0%})", f"{run.seconds:.1f}",
                     verdict(checks["(b) the pull fails clearly, nothing placed"])])
        rows.append(["b, then: pull again with no page free", "", retry.returncode,
                     _shown(retry.error_line or retry.stderr.strip()[-200:], scratch), "", f"{retry.seconds:.1f}",
                     verdict(checks["(b) a retry on the full disk fails clearly"])])
        rows.append(["b, then: `model-fetch gc --partials --json`", "", gc.returncode,
                     f"left: {len(parts)} .part/journal, {len(leases)} lease", "", f"{gc.seconds:.1f}",
                     verdict(checks["(b) after gc: no .part, journal or lease"])])
        for other in ("other-writer.bin", "other-writer-2.bin"):  # space is back: the next pull completes
            os.unlink(mount / other)
        again = run_cli("pull", "--json", env=env, logs=scratch / "logs", timeout=120)
        checks["(b) with space back, a pull completes"] = ok = (
            again.returncode == 0 and final.is_file() and sha256_of(final) == sha)
        rows.append(["b, then: the other files removed, pull again", "", again.returncode,
                     "(placed, sha256 ok)" if ok else _shown(again.error_line, scratch), "", f"{again.seconds:.1f}",
                     verdict(ok)])
        failures += [f"{claim}\npull: {run.stderr[-800:]}\nretry: {retry.stderr[-800:]}\ngc: {gc.stdout}\n"
                     f"left: {parts} {leases}\nagain: {again.stderr[-500:]}" for claim, good in checks.items() if not good]
    return rows, failures


def _shown(line: str, scratch: Path) -> str:
    return f"`{line.replace(str(scratch), '$TMP')}`" if line else ""


def test_disk_full(scratch: Path) -> None:
    rows_a, failures_a = does_not_fit(scratch)
    rows_b, failures_b = fills_up(scratch)
    write_section("disk-full", "Disk full", f"""
Real {FS_MB} MiB filesystems (tmpfs, else ext4 on a loop device), mounted by the test and always unmounted.
(a) The model does not fit: the pull is refused before downloading, naming the need, the free space and the
folder; with `size` in the manifest not one byte is requested, without it only the size probe's one byte.
(b) Preallocation reserves the model's space, so another process fills the rest of the filesystem while the
pull runs (rate-limited to 8 MiB/s); the pull's next allocation (its chunk journal growing past one page)
fails. Claim: exit 1 with one clear `error:` line and no file under the final name; after
`model-fetch gc --partials` (plain `gc` keeps a resumable partial download) no `.part`, journal or lease
left; with the space back the next pull completes.

{table(["case", "setup", "exit", "error", "bytes served", "seconds", "claim"], rows_a + rows_b)}
""")
    assert not failures_a + failures_b, "\n\n".join(failures_a + failures_b)
