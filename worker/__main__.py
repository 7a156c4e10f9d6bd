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
from typing import TYPE_CHECKING, Any, TextIO

from model_fetch.errors import SettingError

from .config import default_runpod_log_level
from .errors import InvalidInput, job_answer

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("worker")


def _announce_ready(rt: Runtime) -> None:
    """Log one line when ComfyUI answers (start scripts and tests wait for it)."""
    t0 = time.monotonic()
    try:
        client = rt.ready()
        log.info("worker ready: ComfyUI at %s answered after %.1fs", client.base_url, time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - the first job reports and restarts
        log.error("ComfyUI did not become ready: %s", exc)


def quiet_runpod_sdk() -> None:
    """The RunPod SDK at INFO unless the user chose a level (it reads the variable on first import)."""
    default_runpod_log_level("INFO")


def _settings_invalid(exc: SettingError, answer_out: TextIO | None) -> int:
    """A setting the environment gives cannot be used: one line naming the variable (and, for
    ``--test-input``, the answer ``{"error", "code": "settings_invalid"}``); exit 1."""
    log.error("error: %s (settings_invalid; see docs/configuration.md)", exc)
    if answer_out is not None:
        print(json.dumps(job_answer(exc), indent=2), file=answer_out)
    return 1


def read_test_input(path: Path) -> dict[str, Any]:
    """The job in a ``--test-input`` file (``{"input": ...}`` or the input itself), or the answer to a file
    that is not one: ``invalid_input`` naming ``--test-input``, never a traceback."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        return InvalidInput("--test-input", f"cannot be read ({exc.strerror or type(exc).__name__})").to_answer()
    except UnicodeDecodeError as exc:
        return InvalidInput("--test-input", f"is not UTF-8 text (byte {exc.start})").to_answer()
    except RecursionError:
        return InvalidInput("--test-input", "is nested too deeply").to_answer()
    except ValueError as exc:
        return InvalidInput("--test-input", f"is not JSON ({str(exc)[:120]})").to_answer()
    job = raw if isinstance(raw, dict) and "input" in raw else {"input": raw}
    job.setdefault("id", "local-test")
    return job


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
    from .redact import install_log_filter

    install_log_filter()  # no log line echoes a base64 image or another long value from a job
    from .handler import handler, runpod_handler, runtime

    from .errors import ComfyNotFound

    answer_out = sys.stdout
    if args.test_input:
        sys.stdout = sys.stderr  # the answer owns stdout; ComfyUI's forwarded output goes to stderr

    try:
        rt = runtime()
    except SettingError as exc:  # model_fetch's, which worker/config.py raises too: a variable's value
        return _settings_invalid(exc, answer_out if args.test_input else None)
    rt.check_gpu()  # logs torch's CUDA build, the driver, the GPU and its VRAM, in the background
    try:
        rt.start()  # boot ComfyUI now: it overlaps with waiting for (and preparing) the first job
    except ComfyNotFound as exc:
        log.error("%s; jobs will answer comfyui_unavailable", exc)
    rt.start_preload()  # WORKER_PRELOAD: read the default workflow's models while ComfyUI boots
    threading.Thread(target=_announce_ready, args=(rt,), name="ready", daemon=True).start()
    try:
        if args.test_input:
            job = read_test_input(args.test_input)
            answer = job if "error" in job else handler(job)
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
        runpod.serverless.start({"handler": runpod_handler})
        return 0
    finally:
        rt.stop()


if __name__ == "__main__":
    sys.exit(main())
