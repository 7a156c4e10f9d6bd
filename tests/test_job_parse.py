"""The job input schema and ``parse_job``: valid examples pass, each invalid case names its field."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.config import DEFAULT_MAX_INPUT_MB
from worker.errors import InvalidInput
from worker.job_parse import (ImageInput, Job, OutputSpec, base64_chars, load_schema,
                              parse_job)

ROOT = Path(__file__).resolve().parent.parent
API = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.api.json").read_text())
UI = json.loads((ROOT / "workflows" / "wan22_i2v_gguf.json").read_text())
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def field_of(raw, **kw) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as err:
        parse_job(raw, **kw)
    return err.value.fields["field"], err.value.message


def test_schema_is_valid_draft_2020_12_and_documents_every_field():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(props: dict, where: str) -> None:
        for name, sub in props.items():
            assert sub.get("description"), f"{where}{name} has no description"
            walk(sub.get("properties") or {}, f"{where}{name}.")
            walk((sub.get("items") or {}).get("properties") or {}, f"{where}{name}[].")

    walk(schema["properties"], "")


def test_defaults():
    assert parse_job({}) == Job(workflow="wan22_i2v_gguf", params={}, images=(), output=OutputSpec(), action="run",
                                timeout=None)


@pytest.mark.parametrize("raw", [
    {"workflow": "wan22_i2v_gguf", "params": {
        "image": PNG_B64, "prompt": "a red fox runs through snow", "negative_prompt": "blurry", "seed": 2 ** 64 - 1,
        "width": 832, "height": 480, "length": 81, "fps": 16, "steps": 4, "cfg": 1.0, "shift": 8.0,
        "lora_strength": 0.75}},
    {"params": {"image": f"data:image/png;base64,{PNG_B64}"}},
    {"params": {"image": "https://example.com/frames/start.png?sig=abc", "denoise": 0.9}},
    {"workflow": API, "images": [{"name": "start_image.png", "image": PNG_B64}]},
    {"workflow": UI, "images": [{"name": "a_1-b.c.png", "image": "https://example.com/a.png"}]},
    {"images": [{"name": "0.png", "image": PNG_B64}, {"name": "A-b_c.d.webp", "image": PNG_B64}]},
    {"action": "status"}, {"action": "prefetch", "workflow": "wan22_i2v_gguf", "timeout": 1800}, {"action": "doctor"},
    {"output": {"mode": "s3", "bucket": "my-videos", "prefix": "jobs/2025-01/", "expires_in": 3600}},
    {"timeout": 0.5},
])
def test_valid_examples_pass(raw):
    job = parse_job(raw)
    assert job.workflow == raw.get("workflow", "wan22_i2v_gguf") and job.params == raw.get("params", {})
    assert job.images == tuple(ImageInput(**i) for i in raw.get("images", []))
    assert job.output == OutputSpec(**raw.get("output", {})) and job.action == raw.get("action", "run")


def test_documented_examples_are_valid():
    text = (ROOT / "docs" / "job-input.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    inputs = [e["input"] for e in examples if isinstance(e, dict) and "input" in e]
    assert len(inputs) >= 4
    for raw in inputs:
        parse_job(raw)


@pytest.mark.parametrize("raw, field, words", [
    ({"workflow": "../etc/passwd"}, "workflow", "saved workflow's name"),
    ({"workflow": 5}, "workflow", "saved workflow's name"),
    ({"workflow": {}}, "workflow", "must not be empty"),
    ({"workflow": "x" * 129}, "workflow", "at most 128"),
    ({"input": {"workflow": "wan22_i2v_gguf"}}, "input", "not the whole job"),
    ({"prompt": "hi"}, "prompt", "unknown key; expected one of: workflow, params"),
    ({"params": []}, "params", "must be an object"),
    ({"params": {"width": 100}}, "params.width", "multiple of 16"),
    ({"params": {"width": "832"}}, "params.width", "must be an integer"),
    ({"params": {"height": 4096}}, "params.height", "at most 2048"),
    ({"params": {"length": 0}}, "params.length", "at least 1"),
    ({"params": {"steps": 101}}, "params.steps", "at most 100"),
    ({"params": {"cfg": -1}}, "params.cfg", "at least 0"),
    ({"params": {"fps": 61}}, "params.fps", "at most 60"),
    ({"params": {"fps": float("nan")}}, "params.fps", "finite"),
    ({"params": {"seed": -1}}, "params.seed", "at least 0"),
    ({"params": {"seed": 2 ** 64}}, "params.seed", "at most"),
    ({"params": {"seed": True}}, "params.seed", "integer"),
    ({"params": {"prompt": "x" * 10001}}, "params.prompt", "longer than 10000"),
    ({"params": {"negative_prompt": None}}, "params.negative_prompt", "must be a string"),
    ({"params": {"image": "hello world!"}}, "params.image", "base64"),
    ({"params": {"image": "http://example.com/a.png"}}, "params.image", "https://"),
    ({"params": {"image": ""}}, "params.image", "must not be empty"),
    ({"params": {"bad-name": 1}}, "params.bad-name", "not an allowed name"),
    ({"params": {"extra": {"a": 1}}}, "params.extra", "string, number or boolean"),
    ({"images": {}}, "images", "must be an array"),
    ({"images": [{"name": "a.png"}]}, "images.0.image", "is required"),
    ({"images": [{"image": PNG_B64}]}, "images.0.name", "is required"),
    ({"images": [{"name": "a.png", "image": PNG_B64, "type": "png"}]}, "images.0.type", "unknown key"),
    ({"images": [{"name": "ok.png", "image": PNG_B64}, {"name": "../x.png", "image": PNG_B64}]}, "images.1.name",
     "no '/'"),
    ({"images": [{"name": ".env", "image": PNG_B64}]}, "images.0.name", "no leading dot"),
    ({"images": [{"name": "a\x07.png", "image": PNG_B64}]}, "images.0.name", "no control characters"),
    ({"images": [{"name": "a\\b.png", "image": PNG_B64}]}, "images.0.name", "no '/' or '\\'"),
    ({"images": [{"name": "x" * 129, "image": PNG_B64}]}, "images.0.name", "1 to 128"),
    ({"images": [{"name": "a.png", "image": PNG_B64}, {"name": "a.png", "image": PNG_B64}]}, "images.1.name",
     "duplicates images.0.name"),
    ({"images": [{"name": f"{i}.png", "image": PNG_B64} for i in range(17)]}, "images", "at most 16"),
    ({"output": {"mode": "ftp"}}, "output.mode", "one of"),
    ({"output": {"mode": "s3", "bucket": "Bad_Bucket"}}, "output.bucket", "S3 bucket name"),
    ({"output": {"mode": "s3", "prefix": "/abs"}}, "output.prefix", "no leading '/'"),
    ({"output": {"mode": "s3", "prefix": "a/../b"}}, "output.prefix", "'..'"),
    ({"output": {"mode": "s3", "expires_in": 10}}, "output.expires_in", "at least 60"),
    ({"output": {"prefix": "jobs/"}}, "output.prefix", "only used with mode 's3'"),
    ({"output": {"mode": "s3", "region": "x"}}, "output.region", "unknown key"),
    ({"action": "explode"}, "action", "one of"),
    ({"action": "status", "params": {"seed": 1}}, "params", "only used with action 'run'"),
    ({"action": "verify", "images": []}, "images", "only used with action 'run'"),
    ({"timeout": 0}, "timeout", "greater than 0"),
    ({"timeout": 86400}, "timeout", "at most 3600"),
    ({"timeout": "60"}, "timeout", "must be a number"),
    ({"timeout": float("inf")}, "timeout", "at most"),
])
def test_invalid_inputs_name_their_field(raw, field, words):
    got_field, message = field_of(raw)
    assert got_field == field and words in message, message
    assert message.startswith(f"{field}: ") and len(message) < 300


def test_top_level_must_be_an_object():
    assert field_of([]) == ("input", "input: must be an object (or a JSON string of one)")
    assert field_of(None)[0] == "input"
    assert field_of("{not json")[1] == "input: is a string but not valid JSON; send an object"


def test_worker_comfyui_shapes_are_accepted():
    job = parse_job(json.dumps({"workflow": API, "images": [{"name": "my start.png", "image": PNG_B64}]}))
    assert job.images[0].name == "my start.png" and job.workflow == API
    for name in ("-rf.png", "a..b.png", "ünïcode 图.webp", "(1) copy.png"):
        assert parse_job({"images": [{"name": name, "image": PNG_B64}]}).images[0].name == name


def test_limits_follow_the_worker_settings(monkeypatch):
    big = "A" * 2000
    assert parse_job({"params": {"image": big}}, max_image_chars=2000).params["image"] == big
    field, message = field_of({"images": [{"name": "a.png", "image": big}]}, max_image_chars=1000)
    assert field == "images.0.image" and "longer than 1000" in message and big not in message
    monkeypatch.setenv("WORKER_MAX_INPUT_MB", "0.001")  # 1000 bytes
    limit = base64_chars(1000)
    assert field_of({"params": {"image": big}}) == ("params.image", f"params.image: is longer than {limit} characters")
    assert field_of({"params": {"image": "http://example.com/a.png"}})[0] == "params.image"
    monkeypatch.setenv("WORKER_ALLOW_HTTP_URLS", "1")
    assert parse_job({"params": {"image": "http://example.com/a.png"}}).params["image"].startswith("http://")
    monkeypatch.setenv("WORKER_TIMEOUT_MAX", "7200")
    assert parse_job({"timeout": 5000}).timeout == 5000.0
    monkeypatch.setenv("WORKER_DEFAULT_WORKFLOW", "my_flow")
    assert parse_job({}).workflow == "my_flow"
    schema_image = load_schema()["properties"]["params"]["properties"]["image"]
    assert schema_image["maxLength"] == base64_chars(DEFAULT_MAX_INPUT_MB * 1000 * 1000)  # the documented default


def test_a_too_large_image_is_refused_without_echo():
    huge = "A" * (base64_chars(DEFAULT_MAX_INPUT_MB * 1000 * 1000) + 4)
    field, message = field_of({"params": {"image": huge}})
    assert field == "params.image" and "longer than" in message and len(message) < 200


KEYS = ["workflow", "params", "images", "output", "action", "timeout", "name", "image", "mode", "bucket", "prefix",
        "expires_in", "seed", "width", "prompt", "fps", "length", "steps", "0", ""]
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | \
    st.sampled_from(["run", "s3", "base64", "status", "wan22_i2v_gguf", PNG_B64, "a.png", "https://x.io/a"])
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
                         max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), json_like, max_size=6) | json_like)
def test_random_json_like_inputs_raise_only_invalid_input(raw):
    try:
        job = parse_job(raw)
    except InvalidInput as exc:
        assert exc.fields["field"] and exc.message.startswith(exc.fields["field"])
    else:
        assert isinstance(job, Job) and job.action in ("run", "status", "prefetch", "verify", "doctor")


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "params": st.dictionaries(st.sampled_from(["seed", "width", "steps", "cfg", "prompt", "image"]), scalars),
    "images": st.lists(st.fixed_dictionaries({"name": st.text(max_size=12), "image": scalars}), max_size=3),
    "output": st.fixed_dictionaries({}, optional={"mode": scalars, "bucket": scalars, "prefix": scalars,
                                                  "expires_in": scalars}),
    "action": scalars, "timeout": scalars}))
def test_near_valid_inputs_raise_only_invalid_input(raw):
    try:
        parse_job(raw)
    except InvalidInput:
        pass
