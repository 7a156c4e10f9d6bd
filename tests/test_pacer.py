"""The one rule that thins progress events (``model_fetch.Pacer``), on a fake clock, and two of its callers:
model_fetch's per-file throttle and the CLI's plain lines. The worker's ``ProgressReporter`` is in
tests/test_progress_render.py."""

from __future__ import annotations

import io
import threading

from model_fetch import FileProgress, Pacer
from model_fetch._progress import PerFileThrottle
from model_fetch._progress_view import PlainLines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repeats_of_a_phase_pass_once_per_interval():
    clock = Clock()
    pacer = Pacer(2.0, clock=clock)
    assert pacer.admit("a", "download")  # a new stream
    assert not pacer.admit("a", "download")
    clock.now += 1.9
    assert not pacer.admit("a", "download")
    clock.now += 0.1
    assert pacer.admit("a", "download")  # 2 s after the last one admitted
    clock.now += 1.0
    assert not pacer.admit("a", "download")  # measured from the admitted one, not the dropped ones


def test_a_new_stream_a_new_phase_and_a_final_event_always_pass():
    clock = Clock()
    pacer = Pacer(3600.0, clock=clock)
    assert pacer.admit(("vae", "b"), "download")
    assert pacer.admit(("unet", "a"), "download")  # another stream
    assert pacer.admit(("vae", "b"), "verify")  # a new phase
    assert pacer.admit(("vae", "b"), "done", final=True)
    assert pacer.admit(("vae", "b"), "done", final=True)  # a final event, even repeated
    assert not pacer.admit(("unet", "a"), "download")
    assert pacer.admit(("unet", "a"), None) and not pacer.admit(("unet", "a"), None)  # no phase is a phase too


def test_with_a_step_an_event_passes_once_the_fraction_moved_that_much():
    clock = Clock()
    pacer = Pacer(5.0, step=0.1, clock=clock)
    assert pacer.admit("f", "download", 0.0)
    assert not pacer.admit("f", "download", 0.05)
    assert not pacer.admit("f", "download", 0.09)
    assert pacer.admit("f", "download", 0.12)
    assert not pacer.admit("f", "download", 0.2)  # 0.08 past the last admitted
    assert not pacer.admit("f", "download", None)  # an unknown fraction never counts as a step
    clock.now += 5.0
    assert pacer.admit("f", "download", 0.15)  # the interval still applies
    without = Pacer(5.0, clock=clock)
    assert without.admit("f", "download", 0.0) and not without.admit("f", "download", 0.9)  # no step: time only


def test_threads_admit_one_first_event_per_stream():
    pacer = Pacer(3600.0)
    admitted: list[bool] = []
    lock = threading.Lock()

    def burst() -> None:
        for _ in range(200):
            ok = pacer.admit("s", "download")
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 1 and len(admitted) == 1600


def _event(phase: str, done: int, total: int | None = 100, name: str = "a.gguf") -> FileProgress:
    return FileProgress(name=name, directory="diffusion_models", phase=phase, done=done, total=total)


def test_the_per_file_throttle_never_drops_a_final_event():
    seen: list[FileProgress] = []
    throttle = PerFileThrottle(seen.append, interval=3600.0)
    for done in (0, 10, 20):
        throttle(_event("download", done))
        throttle(_event("download", done, name="b.gguf"))
    throttle(_event("done", 100))
    throttle(_event("done", 100))
    throttle(_event("present", 50, name="c.gguf"))
    assert [(p.name, p.phase, p.done) for p in seen] == [
        ("a.gguf", "download", 0), ("b.gguf", "download", 0), ("a.gguf", "done", 100), ("a.gguf", "done", 100),
        ("c.gguf", "present", 50)]


def test_plain_lines_print_a_line_per_phase_then_per_10_percent_or_5_seconds():
    clock, out = Clock(), io.StringIO()
    lines = PlainLines(out, Pacer(5.0, step=0.1, clock=clock))
    for done in (0, 4, 8, 11, 15):
        lines(_event("download", done))
    clock.now += 5.0
    lines(_event("download", 16))
    lines(_event("done", 100))
    printed = out.getvalue().splitlines()
    assert [line.split("(")[-1] for line in printed] == ["0%)", "11%)", "16%)", "100%)"], printed
    assert printed[0].startswith("download diffusion_models/a.gguf: ") and printed[-1].startswith("done ")
