"""Worker inputs: 1,000+ hypothesis-generated jobs (huge strings, wrong types, bad base64, truncated and
corrupt images, lone surrogates, deep nesting, traversal names, URLs to loopback and private addresses,
now and then a valid job) through the real handler and
a real ComfyUI. Every answer is a structured error or a success; none raises; none overruns its deadline;
no secret value appears anywhere."""

from __future__ import annotations

import base64
import collections
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.graphs import input_png
from tests.reliability.helpers import table, verdict, write_section
from tests.reliability.worker_runtime import audit_runtime_logs, capture_all_logs, make_runtime, secret_env
from worker import jobs

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]
PNG = base64.b64encode(input_png(16, 16)).decode()
CASES = 1000
BOUND_S = 120.0  # the slowest legitimate answer here is a tiny job (about 2 s) or ComfyUI's first start

TRUNCATED = base64.b64encode(input_png(16, 16)[:90]).decode()
CORRUPT = base64.b64encode(input_png(16, 16)[:40] + bytes(30) + input_png(16, 16)[70:]).decode()
SURROGATES = st.sampled_from(["a\ud800.png", "\udfff", "x\udc00y", "start\ud83d.png"])  # lone halves, as JSON allows


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": [value]}
    return value


deep = st.sampled_from([nested(100), nested(2000)])
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
huge = st.sampled_from(["A" * 5_000_000, "💥" * 200_000, "{" * 100_000, "\x00" * 10_000])
images = st.one_of(
    st.just(PNG), st.just(f"data:image/png;base64,{PNG}"), st.just("data:image/png,notbase64"),
    st.text(alphabet="ABCD=+/!*", min_size=1, max_size=40), st.just(base64.b64encode(b"not an image").decode()),
    st.sampled_from(["https://127.0.0.1/x.png", "https://localhost:8188/view?filename=x", "http://10.0.0.1/a.png",
                     "https://169.254.169.254/latest/meta-data/", "https://[::1]/x.png", "https://192.168.1.1/x.png",
                     "file:///etc/passwd", "ftp://example.com/x.png", "gopher://127.0.0.1:70/"]),
    st.just(TRUNCATED), st.just(CORRUPT), st.just(f"data:image/png;base64,{TRUNCATED}"), SURROGATES, deep,
    huge, junk)
names = st.one_of(SURROGATES, st.sampled_from(["../../etc/passwd", "/etc/shadow", "..", ".hidden", "a/b.png", "x" * 300,
                                   "ok.png", "start.png", "con\x00.png"]), st.text(max_size=20), junk)
numbers = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.sampled_from([16, 32, 48, 64, 5, 9, 1, 2, 4]), junk)
params = st.fixed_dictionaries({}, optional={
    "image": images, "prompt": st.one_of(st.text(max_size=50), huge, junk, SURROGATES, deep), "negative_prompt": st.one_of(st.text(max_size=20), junk),
    "seed": numbers, "width": numbers, "height": numbers, "length": numbers, "fps": numbers, "steps": numbers,
    "cfg": numbers, "shift": numbers, "lora_strength": numbers,
    st.text(max_size=8): junk,
})
valid_params = st.fixed_dictionaries({"image": st.just(PNG), "width": st.just(32), "height": st.just(32),
                                      "length": st.sampled_from([1, 5]), "steps": st.sampled_from([1, 2]),
                                      "seed": st.integers(0, 2**32)})
workflows = st.one_of(st.just("wan22_i2v_gguf"), st.sampled_from(["../workflows/wan22_i2v_gguf", "/etc/passwd", "nope", ""]),
                      st.dictionaries(st.text(max_size=4), junk, max_size=3),
                      st.just({"1": {"class_type": "NoSuchNode", "inputs": {}}}),
                      st.just({"nodes": [{"id": 1, "type": "LoadImage", "widgets_values": ["x.png", "image"]}], "links": []}),
                      junk)
jobs_st = st.one_of(
    junk, huge, deep, st.just("[" * 5000 + "]" * 5000), SURROGATES,
    st.fixed_dictionaries({"workflow": st.just("wan22_i2v_gguf"), "params": st.just({"image": TRUNCATED})}),
    st.fixed_dictionaries({"workflow": st.just("wan22_i2v_gguf"), "params": st.just({"image": PNG}),
                           "images": st.just([{"name": "a\ud800.png", "image": PNG}])}),
    st.fixed_dictionaries({}, optional={
        "workflow": workflows, "params": st.one_of(params, junk),
        "images": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"name": names, "image": images}), max_size=3), junk),
        "output": st.one_of(st.fixed_dictionaries({}, optional={"mode": st.sampled_from(["base64", "s3", "ftp", ""]),
                                                                  "bucket": names, "expires_in": numbers}), junk),
        "action": st.one_of(st.sampled_from(["run", "status", "verify", "doctor", "prefetch", "explode"]), junk),
        "timeout": numbers, st.text(max_size=6): junk}),
    st.fixed_dictionaries({"workflow": st.just("wan22_i2v_gguf"), "params": valid_params}),
)


@pytest.fixture(scope="module")
def runtime(comfyui_dir, tiny_dir, tmp_path_factory):
    with secret_env():
        rt = make_runtime(comfyui_dir, tiny_dir, tmp_path_factory.mktemp("fuzz"))
        yield rt
        rt.stop()


def test_generated_job_inputs_always_get_a_structured_answer(runtime):
    codes: collections.Counter = collections.Counter()
    slowest = [0.0]
    answers: list = []
    with secret_env(), capture_all_logs() as logs:

        @settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(jobs_st)
        def one(raw):
            t0 = time.monotonic()
            answer = jobs.handle(raw, runtime)
            elapsed = time.monotonic() - t0
            slowest[0] = max(slowest[0], elapsed)
            json.dumps(answer)  # serialisable: RunPod sends it as JSON
            assert isinstance(answer, dict)
            if answer.get("status") == "success":
                codes["success"] += 1
            else:
                assert set(answer) >= {"error", "code"} and isinstance(answer["error"], str), answer
                assert answer["code"] != "internal_error", answer
                codes[answer["code"]] += 1
            assert elapsed < BOUND_S, f"{elapsed:.1f}s for {str(raw)[:200]}"
            if len(answers) < 2000:
                answers.append({k: (v[:200] if isinstance(v, str) else v) for k, v in answer.items() if k not in ("outputs", "images")})

        one()
        leaks = audit_runtime_logs(runtime, logs, answers, "worker inputs")
    total = sum(codes.values())
    ok = total >= CASES and not leaks
    rows = [[code, n] for code, n in codes.most_common()]
    write_section("worker-inputs", "Worker inputs: generated jobs", (
        f"{total} hypothesis-generated job inputs (seeded, derandomized) through `worker.jobs.handle` with a real "
        "ComfyUI on CPU and the tiny model set (offline mode, file:// mirror): huge strings (5 MB), wrong types, "
        "bad base64, path-traversal names, URLs to loopback, private, link-local and non-http addresses, unknown "
        "actions and node types, and some valid jobs that really run.\n\n" + table(["answer", "count"], rows)
        + f"\n\nNone raised; none was an `internal_error`; slowest answer {slowest[0]:.1f} s (bound {BOUND_S:.0f} s); "
        f"secret values found in worker logs, answers and ComfyUI's log: {len(leaks)}. Claim: {verdict(ok)}."))
    assert total >= CASES
    assert not leaks, leaks
