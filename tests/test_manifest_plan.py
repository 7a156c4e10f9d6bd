"""Manifests (load, merge, errors naming file and entry) and planning a workflow's model files."""

from __future__ import annotations

import json

import pytest

from model_fetch import Settings, SourceRefused, Store, UnknownModelError
from model_fetch.errors import ManifestError, WorkflowError
from model_fetch._manifest import load_manifest, read_manifest
from model_fetch._planner import needs_of, plan_workflow

SHA = "a" * 64


def write(path, data):
    path.write_text(json.dumps(data) if path.suffix == ".json" else data)
    return path


def test_default_manifest_has_the_wan22_set():
    m = load_manifest()
    names = {(e.directory, e.name) for e in m}
    assert names == {
        ("diffusion_models", "wan2.2_i2v_high_noise_14B_Q5_0.gguf"),
        ("diffusion_models", "wan2.2_i2v_low_noise_14B_Q5_0.gguf"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "wan_2.1_vae.safetensors"),
        ("loras", "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"),
    }
    high = m.find("wan2.2_i2v_high_noise_14B_Q5_0.gguf", "unet")  # legacy alias resolves
    assert high.url.endswith("/HighNoise/Wan2.2-I2V-A14B-HighNoise-Q5_0.gguf")


def test_manifests_merge_yaml_and_json_later_wins(tmp_path):
    a = write(tmp_path / "a.yaml", f"- {{name: x.gguf, directory: unet, url: 'https://h/x', hash: '{SHA}'}}\n")
    b = write(tmp_path / "b.json", {"models": [{"name": "x.gguf", "directory": "diffusion_models", "url": "https://m/x",
                                                "mirrors": ["s3://bucket/x.gguf"], "size": 12}]})
    m = load_manifest([a, b], include_default=False)
    (entry,) = list(m)
    assert entry.url == "https://m/x" and entry.size == 12 and entry.sources == ("s3://bucket/x.gguf", "https://m/x")
    assert entry.directory == "diffusion_models"


@pytest.mark.parametrize("entry, fragment", [
    ({"name": "x", "directory": "vae", "url": "ftp://h/x"}, "must start with"),
    ({"name": "../x", "directory": "vae", "url": "https://h/x"}, "without '..'"),
    ({"name": "x", "directory": "a/b", "url": "https://h/x"}, "'directory'"),
    ({"name": "x", "directory": "vae", "url": "https://h/x", "hash": "zz"}, "64 hex"),
    ({"name": "x", "directory": "vae", "url": "https://h/x", "sizee": 3}, "unknown field"),
    ({"name": "x", "directory": "vae", "url": "https://h/x", "hash_type": "md5", "hash": SHA}, "only sha256"),
])
def test_manifest_errors_name_file_and_entry(tmp_path, entry, fragment):
    path = write(tmp_path / "bad.json", [{"name": "ok.bin", "directory": "vae", "url": "https://h/ok"}, entry])
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(path) in str(err.value) and "entry #2" in str(err.value) and fragment in str(err.value)


def test_manifest_unreadable_and_not_a_list(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="list of entries"):
        read_manifest(write(tmp_path / "m.yaml", "models: 3\n"))


API = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "u.safetensors", "weight_dtype": "default"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t.safetensors", "type": "wan"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
    "4": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "l.safetensors",
                                                          "strength_model": 1.0}},
    "5": {"class_type": "WanUnetLoaderGGUF", "inputs": {"unet_name": "u.safetensors"}},
    "6": {"class_type": "KSampler", "inputs": {"model": ["4", 0]}},
    "7": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": ["9", 0], "clip_name2": "c2.safetensors"}},
}


def test_api_needs_from_loader_inputs():
    needs = {(n.directory, n.name): n.nodes for n in needs_of(API)}
    assert needs == {("diffusion_models", "u.safetensors"): ["1", "5"], ("text_encoders", "t.safetensors"): ["2"],
                     ("loras", "l.safetensors"): ["4"], ("text_encoders", "c2.safetensors"): ["7"]}


def ui_graph():
    return {
        "nodes": [
            {"id": 1, "type": "UNETLoader", "mode": 0, "widgets_values": ["u.gguf", "default"],
             "properties": {"models": [{"name": "u.gguf", "url": "https://h/u.gguf", "directory": "diffusion_models"}]}},
            {"id": 2, "type": "VAELoader", "mode": 2, "widgets_values": ["muted.safetensors"],
             "properties": {"models": [{"name": "muted.safetensors", "url": "https://h/m", "directory": "vae"}]}},
            {"id": 3, "type": "LoraLoaderModelOnly", "mode": 4, "widgets_values": ["bypassed.safetensors", 1.0]},
            {"id": 4, "type": "CLIPLoader", "mode": 0, "widgets_values": ["t.safetensors", "wan", "default"]},
            {"id": 5, "type": "SomeCustomNode", "mode": 0, "widgets_values": ["x"]},
        ],
        "links": [],
        "models": [{"name": "t.safetensors", "url": "https://h/t", "directory": "clip"},
                   {"name": "muted.safetensors", "url": "https://h/m", "directory": "vae"},
                   {"name": "extra.safetensors", "url": "https://h/e", "directory": "loras"}],
    }


def test_ui_needs_skip_muted_and_bypassed_and_use_embedded_metadata():
    needs = {(n.directory, n.name): n for n in needs_of(ui_graph())}
    assert set(needs) == {("diffusion_models", "u.gguf"), ("text_encoders", "t.safetensors"), ("loras", "extra.safetensors")}
    assert needs[("text_encoders", "t.safetensors")].embedded.url == "https://h/t"
    assert needs[("diffusion_models", "u.gguf")].nodes == ["1"]


def test_plan_resolves_store_manifest_and_embedded(tmp_path):
    models = tmp_path / "models"
    (models / "clip").mkdir(parents=True)
    (models / "clip" / "t.safetensors").write_bytes(b"x")  # legacy folder still counts as text_encoders
    store = Store([models])
    manifest_file = write(tmp_path / "m.yaml", f"- {{name: u.gguf, directory: unet, url: 'https://mirror/u', hash: '{SHA}'}}\n")
    trusting_h = Settings.from_env(allowed_hosts=("h",), allow_private_urls=True)
    p = plan_workflow(ui_graph(), load_manifest([manifest_file], include_default=False), store, settings=trusting_h)
    by = {i.name: i for i in p.items}
    assert by["t.safetensors"].present and by["t.safetensors"].path == models / "clip" / "t.safetensors"
    assert by["u.gguf"].entry.url == "https://mirror/u" and by["u.gguf"].entry.sha256 == SHA  # manifest beats workflow
    assert by["extra.safetensors"].entry.url == "https://h/e"
    assert {i.name for i in p.missing()} == {"u.gguf", "extra.safetensors"}


@pytest.mark.parametrize("url, rule", [("https://h/e.safetensors", "MODEL_FETCH_ALLOWED_HOSTS"),
                                       ("http://huggingface.co/e.safetensors", "https")])
def test_plan_refuses_a_missing_model_whose_only_source_breaks_the_url_rules(tmp_path, url, rule):
    """The CLI and the worker plan with the editor's rules: a workflow URL is untrusted input."""
    graph = {"nodes": [{"id": 7, "type": "LoraLoaderModelOnly", "mode": 0, "widgets_values": ["e.safetensors", 1.0],
                        "properties": {"models": [{"name": "e.safetensors", "url": url, "directory": "loras"}]}}],
             "links": []}
    with pytest.raises(SourceRefused) as err:
        plan_workflow(graph, load_manifest(include_default=False), Store([tmp_path / "models"]))
    assert err.value.code == "source_refused" and "'e.safetensors' in 'loras'" in str(err.value)
    assert rule in str(err.value)


def test_plan_unknown_model_names_file_and_folder(tmp_path):
    with pytest.raises(UnknownModelError) as err:
        plan_workflow(API, load_manifest(include_default=False), Store([tmp_path]))
    msg = str(err.value)
    assert "'u.safetensors' in 'diffusion_models'" in msg and "'l.safetensors' in 'loras'" in msg


def test_workflow_file_errors(tmp_path):
    bad = tmp_path / "w.json"
    bad.write_text("{")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        needs_of(bad)
    with pytest.raises(WorkflowError, match="neither a UI-format"):
        needs_of({"a": 1})


def test_a_loader_needs_only_the_model_its_widget_names_not_stale_metadata():
    """A dropdown moved to another model leaves the old one in ``properties.models``: it is not needed."""
    from model_fetch import workflow_needs

    old = {"name": "old_vae.safetensors", "directory": "vae", "url": "https://example.com/old_vae.safetensors"}
    node = {"id": 5, "type": "VAELoader", "widgets_values": ["new_vae.safetensors"], "properties": {"models": [old]}}
    custom = {"id": 6, "type": "SomeCustomLoader", "widgets_values": [], "properties": {"models": [old]}}
    assert [n.name for n in workflow_needs({"nodes": [node], "links": []})] == ["new_vae.safetensors"]
    assert [n.name for n in workflow_needs({"nodes": [custom], "links": []})] == ["old_vae.safetensors"]
