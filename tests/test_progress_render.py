"""The worker renders model_fetch's progress events: throttled per file, never losing a file's last phase."""

from __future__ import annotations

import logging

from worker.handler import ProgressReporter


def _sent(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress ")]


def test_a_files_done_event_is_never_throttled_away(caplog):
    report = ProgressReporter({"id": "j"}, interval=3600.0)
    with caplog.at_level(logging.INFO, logger="worker.handler"):
        report({"stage": "models", "message": "fetching 2 model file(s)"})
        for file in ("diffusion_models/a.gguf", "vae/b.safetensors"):
            for done in (0, 10, 20):  # bursts inside one interval: only the first of each file passes
                report({"stage": "models", "file": file, "phase": "download", "done": done, "total": 30})
        report({"stage": "models", "file": "diffusion_models/a.gguf", "phase": "verify", "done": 30, "total": 30})
        report({"stage": "models", "file": "diffusion_models/a.gguf", "phase": "done", "done": 30, "total": 30})
        report({"stage": "models", "file": "vae/b.safetensors", "phase": "done", "done": 30, "total": 30})
        report({"stage": "queued", "prompt_id": "p"})
        report({"stage": "sampling", "node": "3", "value": 1, "max": 4})
        report({"stage": "sampling", "node": "3", "value": 2, "max": 4})
    sent = _sent(caplog)
    assert len(sent) == 8, sent
    assert sum("'phase': 'done'" in m for m in sent) == 2
    assert sum("'phase': 'download'" in m for m in sent) == 2 and "'value': 2" not in " ".join(sent)


def test_events_of_one_stream_pass_again_after_the_interval(caplog):
    report = ProgressReporter({"id": "j"}, interval=0.0)
    with caplog.at_level(logging.INFO, logger="worker.handler"):
        for value in range(3):
            report({"stage": "sampling", "node": "3", "value": value, "max": 3})
    assert len(_sent(caplog)) == 3
