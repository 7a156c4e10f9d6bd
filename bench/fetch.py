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


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes of the command itself, exit code); RSS read by GNU time after exec."""
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


def speed_section(tmp: Path, path: Path, size: int, rate: int) -> tuple[str, str]:
    rows, results = [], {}
    with FileServer(path.parent, rate_limit=rate) as srv:
        srv.add_hf_file("bench/wan", "model.bin", path)
        hub_url = f"{srv.url}/bench/wan/resolve/main/model.bin"
        env = {"HF_ENDPOINT": srv.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

        def run(label: str, cmd: list[str], cwd: Path | None = None) -> None:
            srv.reset_counters()
            secs, rss, code = timed(cmd, env, cwd)
            results[label] = (secs, rss, code, srv.counters.bytes_sent)
            shutil.rmtree(tmp / "out", ignore_errors=True)

        (tmp / "out").mkdir()
        run("model-fetch pull (8 connections)", pull_cmd(manifest_for(tmp, hub_url), tmp / "out" / "models"))
        (tmp / "out").mkdir()
        run("huggingface_hub.hf_hub_download", [PY, "-c", (
            "from huggingface_hub import hf_hub_download; import sys; "
            f"hf_hub_download('bench/wan', 'model.bin', endpoint={srv.url!r}, cache_dir=sys.argv[1])"), str(tmp / "out")])
        (tmp / "out").mkdir()
        run("requests, one stream", [PY, "-c", (
            "import requests, sys\n"
            f"r = requests.get({srv.url + '/model.bin'!r}, stream=True)\n"
            "with open(sys.argv[1], 'wb') as f:\n"
            "    for b in r.iter_content(1 << 20): f.write(b)"), str(tmp / "out" / "m.bin")])
        (tmp / "out").mkdir()
        if shutil.which("aria2c"):
            run("aria2c -x8 -s8", ["aria2c", "-x8", "-s8", "-k1M", "--file-allocation=falloc", "-q", "-d", str(tmp / "out"),
                                   "-o", "m.bin", f"{srv.url}/model.bin"])
    ours = results["model-fetch pull (8 connections)"][0]
    cap = 8 * rate
    for label, (secs, rss, code, served) in results.items():
        rows.append([label, f"{secs:.2f}", f"{size / secs / MiB:.0f}", f"{size / secs / cap:.0%}",
                     f"{secs / ours:.2f}x" if label != "model-fetch pull (8 connections)" else "1.00x",
                     f"{rss / MiB:.0f}", code])
    hf = results["huggingface_hub.hf_hub_download"][0] / ours
    aria = results.get("aria2c -x8 -s8", (None,))[0]
    goals = [
        f"- ≥ 6x hf_hub_download: **{hf:.1f}x**, {verdict(hf >= 6)}",
        "- ≥ 1.2x aria2c -x8: " + (f"**{aria / ours:.2f}x**, {verdict(aria / ours >= 1.2)}" if aria else "aria2c not installed (apt-get install aria2)"),
        f"- ≥ 90% of the aggregate cap ({cap // MiB} MiB/s): **{size / ours / cap:.0%}**, {verdict(size / ours >= 0.9 * cap)}",
        f"- peak RSS ≤ 300 MiB: **{results['model-fetch pull (8 connections)'][1] / MiB:.0f} MiB**, "
        f"{verdict(results['model-fetch pull (8 connections)'][1] <= 300 * MiB)}",
    ]
    body = (f"{size / MiB / 1024:.1f} GiB file, loopback server capped at {rate // MiB} MiB/s per connection "
            f"(aggregate cap with 8 connections: {cap // MiB} MiB/s). model-fetch and hf_hub_download go through the "
            f"Hugging Face-compatible resolve endpoint (HEAD, redirect to the CDN path, LFS sha256 checked).\n\n"
            + table(["client", "seconds", "MiB/s", "of cap", "time vs model-fetch", "peak RSS MiB", "exit"], rows)
            + "\n\nGoals:\n" + "\n".join(goals))
    return body, ""


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
    cli = []
    for _ in range(10):
        secs, _, code = timed([str(BIN / "model-fetch"), "status", "--no-default-manifest", "--manifest", str(mpath),
                               "--models-dir", str(root)])
        cli.append(secs)
    cli_ms = sorted(cli)[len(cli) // 2] * 1000
    return ("6 files of 8–13 GB with valid stamps (sparse files; no hashing happens).\n\n"
            + table(["call", "median ms"], [["model_fetch.status() in process (50 runs)", f"{api_ms:.2f}"],
                                             ["`model-fetch status` CLI, whole process (10 runs)", f"{cli_ms:.0f}"]])
            + f"\n\nGoal ≤ 50 ms: library call {verdict(api_ms <= 50)}; the CLI, including Python's start-up and imports, "
            f"{verdict(cli_ms <= 50)}.")


def verify_section(path: Path, size: int) -> str:
    from model_fetch.hashing import sha256_file

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
            + table(["tool", "seconds", "MiB/s"], [["model-fetch verify (model_fetch.hashing.sha256_file)", f"{o:.2f}", f"{size / o / MiB:.0f}"],
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
        body, _ = speed_section(tmp, src, size, rate)
        write_section("fetch-speed", "model-fetch: pull speed", body, cmd)
        write_section("fetch-resume", "model-fetch: resume after SIGKILL", resume_section(tmp, src, size, rate), cmd)
        write_section("fetch-status", "model-fetch: status latency", status_section(tmp), cmd)
        write_section("fetch-verify", "model-fetch: verify throughput", verify_section(src, size), cmd)
