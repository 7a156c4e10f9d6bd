"""model-fetch benchmarks: pull speed against hf_hub_download, a single `requests` stream and aria2c;
resume after SIGKILL; `status` latency; `verify` throughput against `openssl dgst -sha256`.

All downloads come from the loopback test server (tests/fileserver.py), capped per connection,
in one run. Sizes: BENCH_FETCH_GIB (default 2), BENCH_RATE_MIB (default 50).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import table, verdict, write_section
from tests.fileserver import FileServer, make_file

MiB = 1024 * 1024
PY = sys.executable
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes of the command itself, exit code); RSS read by GNU time after exec.
    ``env`` entries are added to (not replacing) the environment."""
    with tempfile.NamedTemporaryFile("r") as rss:
        wrapped = ["/usr/bin/time", "-o", rss.name, "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd
        t0 = time.monotonic()
        code = subprocess.run(wrapped, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode
        secs = time.monotonic() - t0
        text = Path(rss.name).read_text().strip().splitlines()
    return secs, int(text[-1]) * 1024 if text and text[-1].isdigit() else 0, code


def manifest_for(tmp: Path, url: str, name: str = "model.bin") -> Path:
    m = tmp / "bench-manifest.json"
    m.write_text(json.dumps([{"name": name, "directory": "diffusion_models", "url": url}]))
    return m


def pull_cmd(manifest: Path, models: Path, connections: int = 8) -> list[str]:
    return [str(BIN / "model-fetch"), "pull", "--no-default-manifest", "--manifest", str(manifest),
            "--models-dir", str(models), "--connections", str(connections)]


SERVER = """
import signal, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.fileserver import FileServer
path = Path(sys.argv[2])
srv = FileServer(path.parent, rate_limit=int(sys.argv[3])).start()
srv.add_hf_file("bench/wan", "model.bin", path)
print(srv.url, flush=True)
signal.pause()
"""


def speed_section(tmp: Path, path: Path, size: int, rate: int, rounds: int = 7) -> str:
    """Median of ``rounds`` interleaved runs for the fast clients, one run for the single-stream ones.
    The server runs in its own process, as a real one would."""
    server = subprocess.Popen([PY, "-c", SERVER, str(ROOT), str(path), str(rate)], stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    runs: dict[str, list[tuple[float, int, int]]] = {}
    try:
        hub_url = f"{url}/bench/wan/resolve/main/model.bin"
        env = {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        clients = {
            "model-fetch pull (8 connections)": pull_cmd(manifest_for(tmp, hub_url), tmp / "out" / "models"),
            "aria2c -x8 -s8": ["aria2c", "-x8", "-s8", "-k1M", "--file-allocation=falloc", "-q", "-d",
                               str(tmp / "out"), "-o", "m.bin", f"{url}/model.bin"] if shutil.which("aria2c") else None,
            "huggingface_hub.hf_hub_download": [PY, "-c", (
                "from huggingface_hub import hf_hub_download; import sys; "
                f"hf_hub_download('bench/wan', 'model.bin', endpoint={url!r}, cache_dir=sys.argv[1])"), str(tmp / "out")],
            "requests, one stream": [PY, "-c", (
                "import requests, sys\n"
                f"r = requests.get({url + '/model.bin'!r}, stream=True)\n"
                "with open(sys.argv[1], 'wb') as f:\n"
                "    for b in r.iter_content(1 << 20): f.write(b)"), str(tmp / "out" / "m.bin")],
        }
        seg = size // 8
        curl = ("for i in 0 1 2 3 4 5 6 7; do curl -s -o \"$1/part$i\" -r $((i*$2))-$(((i+1)*$2-1)) \"$3\" & done; wait")
        clients["curl x8 ranges (calibration: C, no sha256, no fsync)"] = (
            ["bash", "-c", curl, "curl8", str(tmp / "out"), str(seg), f"{url}/model.bin"] if shutil.which("curl") else None)
        # One unrecorded warm-up run of each fast client first: on this VM the first gigabytes written after a
        # while land in guest memory the host has to back again, which slows whichever client comes first.
        order = list(clients)[:2] * (rounds + 1) + list(clients)[2:]
        for i, label in enumerate(order):
            if clients[label] is None:
                continue
            shutil.rmtree(tmp / "out", ignore_errors=True)
            (tmp / "out").mkdir()
            subprocess.run(["sync"])
            result = timed(clients[label], env)
            if i >= 2:
                runs.setdefault(label, []).append(result)
        shutil.rmtree(tmp / "out", ignore_errors=True)
    finally:
        server.terminate()
        server.wait(10)

    def med(label: str) -> tuple[float, int, int]:
        return sorted(runs[label])[len(runs[label]) // 2]

    ours = med("model-fetch pull (8 connections)")[0]
    cap = 8 * rate
    rows = []
    for label in runs:
        secs, rss, code = med(label)
        rows.append([label, len(runs[label]), " / ".join(f"{r[0]:.2f}" for r in runs[label]), f"{secs:.2f}",
                     f"{size / secs / MiB:.0f}", f"{size / secs / cap:.0%}", f"{secs / ours:.2f}x", f"{rss / MiB:.0f}", code])
    hf = med("huggingface_hub.hf_hub_download")[0] / ours
    aria = med("aria2c -x8 -s8")[0] / ours if "aria2c -x8 -s8" in runs else None
    rss_ours = med("model-fetch pull (8 connections)")[1]
    goals = [
        f"- ≥ 6x hf_hub_download: **{hf:.1f}x**, {verdict(hf >= 6)}",
        "- ≥ 1.2x aria2c -x8: " + (f"**{aria:.2f}x**, {verdict(aria >= 1.2)}" if aria else "aria2c not installed (apt-get install aria2)"),
        f"- ≥ 90% of the aggregate cap ({cap // MiB} MiB/s): **{size / ours / cap:.0%}**, {verdict(size / ours >= 0.9 * cap)}",
        f"- peak RSS ≤ 300 MiB: **{rss_ours / MiB:.0f} MiB**, {verdict(rss_ours <= 300 * MiB)}",
    ]
    return (f"{size / MiB / 1024:.1f} GiB file from a loopback server in its own process, capped at {rate // MiB} MiB/s per "
            f"connection (aggregate cap with 8 connections: {cap // MiB} MiB/s). model-fetch and hf_hub_download go through "
            "the Hugging Face-compatible resolve endpoint (HEAD, redirect to the CDN path on another host name, LFS sha256 "
            f"checked); times include process start. model-fetch and aria2c: one warm-up run each (not counted), then "
            f"{rounds} interleaved runs, median; "
            "other clients once. The curl row shows what this machine allows a client that neither hashes nor "
            "syncs; runs here vary by ±15% from one to the next (2 cores shared by server, client and kernel "
            "writeback: the pull is CPU-bound here, most of the client's CPU being the kernel's copy of socket data "
            "into fresh page-cache pages, and about 0.4 s of model-fetch's time is start-up: interpreter, "
            "huggingface_hub import, Hub metadata). Peak RSS by GNU time (model-fetch's includes the mapped pages of the .part in flight).\n\n"
            + table(["client", "runs", "seconds (each)", "median s", "MiB/s", "of cap", "time vs model-fetch",
                     "peak RSS MiB", "exit"], rows)
            + "\n\nGoals:\n" + "\n".join(goals))


def resume_section(tmp: Path, path: Path, size: int, rate: int) -> str:
    chunk, conns = 8 * MiB, 8
    with FileServer(path.parent, rate_limit=rate) as srv:
        manifest = manifest_for(tmp, f"{srv.url}/model.bin")
        models = tmp / "resume-models"
        proc = subprocess.Popen(pull_cmd(manifest, models, conns), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while srv.counters.bytes_sent < size // 2 and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        srv.wait_idle(5)
        first = srv.counters.bytes_sent
        srv.reset_counters()
        secs, _, code = timed(pull_cmd(manifest, models, conns))
        second = srv.counters.bytes_sent
    remaining = size - first
    bound = remaining + conns * chunk
    ok = code == 0 and second <= bound
    return (f"{size / MiB / 1024:.1f} GiB, {conns} connections, {chunk // MiB} MiB chunks, SIGKILL once "
            f"{first / size:.0%} of the bytes had been served, then `model-fetch pull` again.\n\n"
            + table(["served before kill", "remaining", "re-pulled", "bound (remaining + 1 chunk/connection)", "exit"],
                    [[f"{first / MiB:.0f} MiB", f"{remaining / MiB:.0f} MiB", f"{second / MiB:.0f} MiB",
                      f"{bound / MiB:.0f} MiB", code]])
            + f"\n\nGoal: re-fetched ≤ remaining + one chunk per connection: {verdict(ok)} "
            f"(extra over remaining: {(second - remaining) / MiB:.1f} MiB).")


def status_section(tmp: Path) -> str:
    import model_fetch

    subprocess.run(["sync"])  # the pulls before this leave gigabytes of writeback competing for the CPU
    from model_fetch import ModelEntry, Settings, Store

    root = tmp / "status-models"
    entries = []
    for i in range(6):
        e = ModelEntry(f"model_{i}.gguf", "diffusion_models", url=f"https://example.invalid/{i}")
        p = root / "diffusion_models" / e.name
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate((8 + i) * 1024 * MiB)  # sparse multi-GB files
        Store([root]).write_stamp(p, "0" * 64, expected=False)
        entries.append(e)
    manifest = model_fetch.Manifest()
    for e in entries:
        manifest.add(e)
    settings = Settings(models_dirs=[root], include_default_manifest=False)
    store = Store([root])
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        files = model_fetch.status(settings=settings, manifest=manifest, store=store)
        times.append(time.perf_counter() - t0)
    assert all(f.state == "present" for f in files)
    api_ms = sorted(times)[len(times) // 2] * 1000
    mpath = tmp / "status-manifest.json"
    mpath.write_text(json.dumps([{"name": e.name, "directory": e.directory, "url": e.url} for e in entries]))
    # As deployed (the image compiles bytecode): compile once, and let Python use the .pyc files.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "model_fetch")], check=True)
    env = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: off
    cli_cmd = [str(BIN / "model-fetch"), "status", "--no-default-manifest", "--manifest", str(mpath), "--models-dir", str(root)]
    bare_cmd = [PY, "-c", "pass"]
    cli, bare = [], []
    for _ in range(25):  # interleaved: this machine's process start-up drifts from minute to minute
        cli.append(timed(cli_cmd, env)[0])
        bare.append(timed(bare_cmd, env)[0])
    cli_ms, bare_ms = (sorted(x)[len(x) // 2] * 1000 for x in (cli, bare))
    return ("6 files of 8–13 GB with valid stamps (sparse files; no hashing happens). Process times are medians of "
            "25 runs interleaved with a bare interpreter start (calibration; both under GNU time).\n\n"
            + table(["call", "median ms"], [["model_fetch.status() in process (50 runs)", f"{api_ms:.2f}"],
                                             ["`model-fetch status` CLI, whole process", f"{cli_ms:.0f}"],
                                             ["`python -c pass` in the same venv (calibration)", f"{bare_ms:.0f}"]])
            + f"\n\nGoal ≤ 50 ms: library call {verdict(api_ms <= 50)}; the CLI, including Python's start-up and imports, "
            f"{verdict(cli_ms <= 50)} ({cli_ms - bare_ms:.0f} ms over a bare interpreter start).")


def verify_section(path: Path, size: int) -> str:
    from model_fetch._hashing import sha256_file

    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # both read from the page cache
    ours, theirs = [], []
    for _ in range(3):
        t0 = time.monotonic()
        sha256_file(path)
        ours.append(time.monotonic() - t0)
        t0 = time.monotonic()
        subprocess.run(["openssl", "dgst", "-sha256", str(path)], stdout=subprocess.DEVNULL, check=True)
        theirs.append(time.monotonic() - t0)
    o, t = min(ours), min(theirs)
    return (f"sha256 of the same {size / MiB / 1024:.1f} GiB file, from the page cache, best of 3 interleaved runs.\n\n"
            + table(["tool", "seconds", "MiB/s"], [["model-fetch verify (model_fetch._hashing.sha256_file)", f"{o:.2f}", f"{size / o / MiB:.0f}"],
                                                  ["openssl dgst -sha256", f"{t:.2f}", f"{size / t / MiB:.0f}"]])
            + f"\n\nGoal ≥ 0.9x openssl: **{t / o:.2f}x**, {verdict(t / o >= 0.9)}.")


def run() -> None:
    size = int(float(os.environ.get("BENCH_FETCH_GIB", "2")) * 1024 * MiB)
    rate = int(float(os.environ.get("BENCH_RATE_MIB", "50")) * MiB)
    cmd = "make bench (python -m bench fetch)"
    with tempfile.TemporaryDirectory(prefix="bench-fetch-", dir=os.environ.get("BENCH_TMP")) as d:
        tmp = Path(d)
        src = tmp / "served" / "model.bin"
        src.parent.mkdir()
        make_file(src, size, seed=1)
        write_section("fetch-speed", "model-fetch: pull speed", speed_section(tmp, src, size, rate), cmd)
        write_section("fetch-resume", "model-fetch: resume after SIGKILL", resume_section(tmp, src, size, rate), cmd)
        write_section("fetch-status", "model-fetch: status latency", status_section(tmp), cmd)
        write_section("fetch-verify", "model-fetch: verify throughput", verify_section(src, size), cmd)
