"""``python -m worker``: the serverless worker.

    python -m worker                         # RunPod serverless loop (ComfyUI started at once)
    python -m worker --test-input job.json   # run one job locally, print the answer, exit 0/1
    python -m worker --serve [--host H] [--port 8000]   # runpod's local API server (/run, /runsync)

The RunPod SDK logs at INFO unless RUNPOD_LOG_LEVEL (or RUNPOD_DEBUG_LEVEL) is set: at its own
default, DEBUG, it prints every job's input and output (users' images, base64 videos).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from .config import default_runpod_log_level

log = logging.getLogger("worker")


def _announce_ready(rt) -> None:
    """Log one line when ComfyUI answers (start scripts and tests wait for it)."""
    t0 = time.monotonic()
    try:
        rt.ready()
        log.info("worker ready: ComfyUI at %s answered after %.1fs", rt.process.url, time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - the first job reports and restarts
        log.error("ComfyUI did not become ready: %s", exc)


def quiet_runpod_sdk() -> None:
    """The RunPod SDK at INFO unless the user chose a level (it reads the variable on first import)."""
    default_runpod_log_level("INFO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="WAN 2.2 I2V serverless worker")
    parser.add_argument("--test-input", type=Path, metavar="FILE", help="run one job from a JSON file and exit")
    parser.add_argument("--serve", action="store_true", help="start runpod's local API server")
    parser.add_argument("--host", help="address of the local API server (default: WORKER_SERVE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port of the local API server")
    parser.add_argument("--output", type=Path, help="with --test-input: also write the answer to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from .handler import handler, runtime

    from .errors import ComfyNotFound

    answer_out = sys.stdout
    if args.test_input:
        sys.stdout = sys.stderr  # the answer owns stdout; ComfyUI's forwarded output goes to stderr

    rt = runtime()
    rt.check_gpu()  # logs torch's CUDA build, the driver, the GPU and its VRAM, in the background
    try:
        rt.start()  # boot ComfyUI now: it overlaps with waiting for (and preparing) the first job
    except ComfyNotFound as exc:
        log.error("%s; jobs will answer comfyui_unavailable", exc)
    rt.start_preload()  # WORKER_PRELOAD: read the default workflow's models while ComfyUI boots
    threading.Thread(target=_announce_ready, args=(rt,), name="ready", daemon=True).start()
    try:
        if args.test_input:
            raw = json.loads(args.test_input.read_text())
            job = raw if "input" in raw else {"input": raw}
            job.setdefault("id", "local-test")
            answer = handler(job)
            text = json.dumps(answer, indent=2)
            if args.output:
                args.output.write_text(text)
            print(text, file=answer_out)
            return 1 if "error" in answer else 0
        quiet_runpod_sdk()
        import runpod

        host = args.host or rt.settings.serve_host
        sys.argv = [sys.argv[0]] + (["--rp_serve_api", "--rp_api_host", host, "--rp_api_port", str(args.port)]
                                    if args.serve else [])
        runpod.serverless.start({"handler": handler})
        return 0
    finally:
        rt.stop()


if __name__ == "__main__":
    sys.exit(main())
