"""ComfyUI killed (SIGKILL) during a job, 10 times: each job in flight gets a structured error within
its deadline, each next job succeeds (the worker restarts ComfyUI), and no secret value is logged."""

from __future__ import annotations

import base64
import time

import pytest

from tests.graphs import input_png
from tests.reliability.helpers import table, verdict, write_section
from tests.reliability.worker_runtime import audit_runtime_logs, capture_all_logs, make_runtime, secret_env
from worker import jobs

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]
ROUNDS = 10
IMAGE = base64.b64encode(input_png(64, 48)).decode()
LONG = {"image": IMAGE, "width": 128, "height": 128, "length": 9, "steps": 30}
SHORT = {"image": IMAGE, "width": 32, "height": 32, "length": 5, "steps": 2}


def test_comfyui_death_fails_the_job_in_flight_and_the_next_one_succeeds(comfyui_dir, tiny_dir, tmp_path):
    rows, answers, ok = [], [], True
    with secret_env(), capture_all_logs() as logs:
        rt = make_runtime(comfyui_dir, tiny_dir, tmp_path)
        try:
            for i in range(ROUNDS):
                killed: list[float] = []

                def report(event, killed=killed):
                    if event.get("stage") == "sampling" and not killed:
                        killed.append(time.monotonic())
                        rt.process.kill()

                job = {"workflow": "wan22_i2v_gguf", "params": {**LONG, "seed": i}}
                deadline = jobs.deadline_for(jobs.parse_job(job), job["params"], rt)
                t0 = time.monotonic()
                failed = jobs.handle(job, rt, report)
                fail_s = time.monotonic() - t0
                noticed = time.monotonic() - killed[0] if killed else float("nan")
                t1 = time.monotonic()
                after = jobs.handle({"workflow": "wan22_i2v_gguf", "params": {**SHORT, "seed": i}}, rt)
                next_s = time.monotonic() - t1
                answers += [failed, {k: v for k, v in after.items() if k not in ("outputs", "images")}]
                good = (bool(killed) and failed.get("code") == "comfyui_unavailable" and fail_s < deadline
                        and after.get("status") == "success")
                ok &= good
                rows.append([i + 1, failed.get("code"), f"{noticed:.1f}", f"{fail_s:.1f} / {deadline:.0f}",
                             after.get("status", after.get("code")), f"{next_s:.1f}"])
            starts = rt.process.starts
        finally:
            rt.stop()
        leaks = audit_runtime_logs(rt, logs, answers, "ComfyUI death")
    write_section("comfyui-death", "ComfyUI killed during a job", (
        f"{ROUNDS} rounds: a job (128×128, 9 frames, 30 steps) starts; ComfyUI gets SIGKILL at its first sampling "
        "progress event; then a short job follows.\n\n"
        + table(["round", "job in flight", "noticed after kill (s)", "answered after (s) / deadline (s)",
                 "next job", "next job took (s, includes ComfyUI restart)"], rows)
        + f"\n\nComfyUI started {starts} times. Secret values found in logs, answers and ComfyUI's log: {len(leaks)}. "
        f"Claim: {verdict(ok and not leaks)}."))
    assert ok, rows
    assert starts == ROUNDS + 1
    assert not leaks, leaks
