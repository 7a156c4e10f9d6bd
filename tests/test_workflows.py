"""Saved workflows, parameter maps and UI→API conversion.

``tests/data/object_info.json`` is a trimmed ``/object_info`` of ComfyUI 0.8.0 with our pack loaded
(refresh with ``python -m tests.data.refresh_object_info``; a ``comfyui`` test checks it still matches).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import jsonschema
import pytest

from worker.errors import InvalidInput
from worker.ui_to_api import ui_to_api
from worker.workflows import (DEFAULT_WORKFLOW, apply_params, check_param_map, list_workflows, load_param_map,
                              load_workflow)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
OBJECT_INFO = json.loads((Path(__file__).parent / "data" / "object_info.json").read_text())
API = json.loads((WORKFLOWS / "wan22_i2v_gguf.api.json").read_text())
UI = json.loads((WORKFLOWS / "wan22_i2v_gguf.json").read_text())
PMAP = json.loads((WORKFLOWS / "wan22_i2v_gguf.params.json").read_text())
TEMPLATES = ROOT / ".venv/lib/python3.11/site-packages/comfyui_workflow_templates_media_video/templates"


def run(params: dict) -> dict:
    return apply_params(API, PMAP, {"image": "start.png", **params})


# -- parameter map ----------------------------------------------------------------------------------
def test_apply_sets_every_target_and_leaves_input_alone():
    before = copy.deepcopy(API)
    graph = run({"prompt": "a fox", "seed": 7, "cfg": 2.5, "shift": 5.0, "lora_strength": 0.8, "fps": 24,
                 "width": 640, "height": 368, "length": 49})
    assert API == before and graph is not API
    assert graph["1"]["inputs"]["image"] == "start.png" and graph["3"]["inputs"]["text"] == "a fox"
    assert [graph[n]["inputs"]["noise_seed"] for n in ("13", "14")] == [7, 7]
    assert [graph[n]["inputs"]["cfg"] for n in ("13", "14")] == [2.5, 2.5]
    assert [graph[n]["inputs"]["shift"] for n in ("10", "11")] == [5.0, 5.0]
    assert [graph[n]["inputs"]["strength_model"] for n in ("8", "9")] == [0.8, 0.8]
    assert (graph["12"]["inputs"]["width"], graph["12"]["inputs"]["height"], graph["12"]["inputs"]["length"]) == \
        (640, 368, 49)
    assert graph["16"]["inputs"]["fps"] == 24 and graph["4"] == API["4"]


@pytest.mark.parametrize("steps, split", [(1, 0), (4, 2), (7, 3), (8, 4), (100, 50)])
def test_steps_move_the_two_stage_split(steps, split):
    graph = run({"steps": steps})
    high, low = graph["13"]["inputs"], graph["14"]["inputs"]
    assert high["steps"] == low["steps"] == steps
    assert (high["start_at_step"], high["end_at_step"], low["start_at_step"], low["end_at_step"]) == \
        (0, split, split, 10000)
    assert isinstance(high["end_at_step"], int)


def test_integral_floats_become_integers():
    assert run({"width": 512.0})["12"]["inputs"]["width"] == 512
    assert isinstance(run({"width": 512.0})["12"]["inputs"]["width"], int)


@pytest.mark.parametrize("params, field, words", [
    ({"width": 500}, "params.width", "multiple of 16"),
    ({"width": 4096}, "params.width", "between 16 and 2048"),
    ({"height": 0}, "params.height", "between"),
    ({"length": 80}, "params.length", "1 more than a multiple of 4"),
    ({"length": 245}, "params.length", "between 1 and 241"),
    ({"steps": 0}, "params.steps", "between 1 and 100"),
    ({"steps": 4.5}, "params.steps", "integer"),
    ({"cfg": 31}, "params.cfg", "between 0 and 30"),
    ({"cfg": "7"}, "params.cfg", "number"),
    ({"fps": float("inf")}, "params.fps", "finite"),
    ({"seed": -1}, "params.seed", "between"),
    ({"seed": 2 ** 64}, "params.seed", "between"),
    ({"seed": True}, "params.seed", "integer"),
    ({"prompt": "x" * 10001}, "params.prompt", "longer than 10000"),
    ({"prompt": 5}, "params.prompt", "string"),
    ({"image": "../secret.png"}, "params.image", "input folder"),
    ({"image": "/etc/passwd"}, "params.image", "input folder"),
    ({"sede": 1}, "params.sede", "unknown parameter"),
])
def test_invalid_params_name_their_field(params, field, words):
    with pytest.raises(InvalidInput) as err:
        run(params)
    assert err.value.fields["field"] == field and words in err.value.message


def test_required_image_and_params_object():
    with pytest.raises(InvalidInput, match="params.image: is required"):
        apply_params(API, PMAP, {"seed": 1})
    with pytest.raises(InvalidInput, match="^params: must be an object"):
        apply_params(API, PMAP, ["seed"])
    with pytest.raises(InvalidInput, match="takes no parameters"):
        apply_params(API, None, {"seed": 1})
    assert apply_params(API, None, None) == API


def test_param_map_targeting_a_missing_input_is_refused():
    broken = copy.deepcopy(PMAP)
    broken["params"]["fps"]["targets"][0]["input"] = "frame_rate"
    with pytest.raises(InvalidInput, match="params.fps: .*does not have"):
        apply_params(API, broken, {"image": "a.png", "fps": 8})


def test_repo_param_map_is_clean_and_defaults_are_graph_values():
    assert check_param_map(API, PMAP) == []
    assert set(PMAP["params"]) == {"image", "prompt", "negative_prompt", "seed", "width", "height", "length", "fps",
                                   "steps", "cfg", "shift", "lora_strength"}


def test_drift_check_reports_renamed_renumbered_and_changed_nodes():
    moved = copy.deepcopy(API)
    moved["30"] = moved.pop("13")  # a re-export renumbered the high-noise sampler
    moved["14"]["inputs"]["latent_image"] = ["30", 0]
    problems = check_param_map(moved, PMAP)
    assert any("no node 13" in p and "node 30 has that class and title" in p for p in problems)
    renamed = copy.deepcopy(API)
    renamed["12"]["_meta"]["title"] = "WanImageToVideo"
    assert any("params.width.targets[0]" in p and "titled 'WanImageToVideo'" in p
               for p in check_param_map(renamed, PMAP))
    changed = copy.deepcopy(API)
    changed["13"]["inputs"]["end_at_step"] = 3
    assert any("gives 2 but the graph holds 3" in p for p in check_param_map(changed, PMAP))
    assert check_param_map(changed, PMAP, check_defaults=False) == []
    linked = copy.deepcopy(API)
    linked["16"]["inputs"]["fps"] = ["12", 0]
    assert any("fed by a link" in p for p in check_param_map(linked, PMAP))


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m.pop("params"), "'params' object"),
    (lambda m: m["params"]["seed"].update(type="int"), "'type' must be one of"),
    (lambda m: m["params"]["seed"].update(targets=[]), "non-empty 'targets'"),
    (lambda m: m["params"]["seed"]["targets"][0].pop("title"), "needs string 'node'"),
    (lambda m: m["params"]["steps"]["targets"][2].update(round="up"), "'round' must be one of"),
    (lambda m: m["params"]["width"].update(default=833), "default 833 is invalid"),
    (lambda m: m["params"]["cfg"].pop("default"), "needs a 'default'"),
])
def test_malformed_param_maps_are_reported(mutate, words):
    pmap = copy.deepcopy(PMAP)
    mutate(pmap)
    assert any(words in p for p in check_param_map(API, pmap))


def test_job_schema_bounds_match_the_param_map():
    schema = json.loads((ROOT / "worker" / "job_schema.json").read_text())["properties"]["params"]["properties"]
    for name, spec in PMAP["params"].items():
        prop = schema[name]
        assert prop.get("minimum") == spec.get("minimum") and prop.get("maximum") == spec.get("maximum"), name
        if not spec.get("offset"):  # 4k+1 is not expressible in JSON Schema; the map checks it
            assert prop.get("multipleOf") == spec.get("multiple_of"), name
        assert prop.get("maxLength", 0) >= spec.get("max_length", 0), name


# -- loading ----------------------------------------------------------------------------------------
def test_load_by_name_gives_api_graph_and_param_map():
    loaded = load_workflow(DEFAULT_WORKFLOW)
    assert loaded.graph == API and loaded.param_map == PMAP and loaded.source == "name"
    assert DEFAULT_WORKFLOW in list_workflows()
    assert load_param_map(DEFAULT_WORKFLOW) == PMAP


@pytest.mark.parametrize("name", ["../workflows/wan22_i2v_gguf", "/etc/passwd", "..", "", "wan22_i2v_gguf.api",
                                  "wan22_i2v_gguf.params", "wan22_i2v_gguf/../wan22_i2v_gguf", "build_ui",
                                  "wan22_i2v_gguf\x00", "nope", "x" * 5000])
def test_unknown_or_traversal_names_are_refused(name):
    with pytest.raises(InvalidInput) as err:
        load_workflow(name)
    assert err.value.fields["field"] == "workflow" and len(err.value.message) < 400


def test_workflow_saved_only_in_ui_format_loads_with_object_info(tmp_path):
    shutil.copy(WORKFLOWS / "wan22_i2v_gguf.json", tmp_path / "artist.json")
    shutil.copy(WORKFLOWS / "wan22_i2v_gguf.params.json", tmp_path / "artist.params.json")
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    assert list_workflows(tmp_path) == ["artist", "notes"]
    assert load_workflow("artist", OBJECT_INFO, workflows_dir=tmp_path).graph == API
    with pytest.raises(InvalidInput, match="not a graph-editor workflow"):
        load_workflow("notes", OBJECT_INFO, workflows_dir=tmp_path)
    with pytest.raises(InvalidInput, match="needs ComfyUI's /object_info"):
        load_workflow("artist", None, workflows_dir=tmp_path)


def test_inline_graphs_get_the_matching_param_map_only():
    inline = load_workflow(copy.deepcopy(API))
    assert (inline.source, inline.name, inline.param_map) == ("api", DEFAULT_WORKFLOW, PMAP)
    edited = copy.deepcopy(API)
    edited["3"]["inputs"]["text"] = "another prompt"  # values differ: still the same workflow
    assert load_workflow(edited).param_map == PMAP
    assert load_workflow(copy.deepcopy(UI), OBJECT_INFO).param_map == PMAP
    other = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    assert load_workflow(other).param_map is None


@pytest.mark.parametrize("graph, words", [
    ({}, "non-empty"), ({"1": "LoadImage"}, "node '1' needs a string 'class_type'"),
    ({"1": {"inputs": {}}}, "class_type"), ({"1": {"class_type": "A", "inputs": [1]}}, "'inputs' must be an object"),
])
def test_malformed_inline_api_graphs_are_refused(graph, words):
    with pytest.raises(InvalidInput, match=words):
        load_workflow(graph)


# -- the repo's UI file -----------------------------------------------------------------------------
def _frontend_workflow_schema() -> dict:
    """The frontend's zod ``zComfyWorkflow`` (schema version 0.4) as JSON Schema, the parts it requires."""
    num, node_id = {"type": "number"}, {"type": ["integer", "string"]}
    vec2 = {"type": "array", "prefixItems": [num, num], "minItems": 2, "maxItems": 2}
    model = {"type": "object", "required": ["name", "url", "directory"],
             "properties": {"name": {"type": "string"}, "url": {"type": "string", "pattern": "^https://"},
                            "directory": {"type": "string"}}}
    node = {"type": "object", "required": ["id", "type", "pos", "size", "flags", "order", "mode", "properties"],
            "properties": {
                "id": node_id, "type": {"type": "string"}, "pos": vec2, "size": vec2, "flags": {"type": "object"},
                "order": num, "mode": num, "title": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {
                    "name": {"type": "string"}, "link": {"type": ["integer", "null"]}}}},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {
                    "links": {"type": ["array", "null"], "items": {"type": "integer"}}}}},
                "properties": {"type": "object", "properties": {"models": {"type": "array", "items": model}}},
                "widgets_values": {"type": ["array", "object"]}}}
    link = {"type": "array", "minItems": 6, "maxItems": 6,
            "prefixItems": [num, node_id, {"type": "integer"}, node_id, {"type": "integer"}, {"type": "string"}]}
    return {"type": "object", "required": ["last_node_id", "last_link_id", "nodes", "links", "version"],
            "properties": {"id": {"type": "string", "format": "uuid"}, "last_node_id": node_id, "last_link_id": num,
                           "nodes": {"type": "array", "items": node}, "links": {"type": "array", "items": link},
                           "groups": {"type": "array", "items": {"type": "object", "required": ["title", "bounding"]}},
                           "version": num, "models": {"type": "array", "items": model},
                           "extra": {"type": "object"}}}


def test_ui_file_converts_to_exactly_the_api_file():
    assert ui_to_api(UI, OBJECT_INFO) == API


def test_ui_file_has_the_editor_shape_same_ids_and_consistent_links():
    jsonschema.validate(UI, _frontend_workflow_schema())
    nodes = {n["id"]: n for n in UI["nodes"]}
    assert {str(i) for i, n in nodes.items() if n["type"] != "MarkdownNote"} == set(API)
    assert all(nodes[int(i)]["title"] == API[i]["_meta"]["title"] for i in API)
    assert UI["last_node_id"] == max(nodes) and UI["last_link_id"] == max(link[0] for link in UI["links"])
    for link_id, origin, origin_slot, target, target_slot, kind in UI["links"]:
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
        assert link_id in nodes[origin]["outputs"][origin_slot]["links"]
        assert nodes[origin]["outputs"][origin_slot]["type"] == kind


def test_loaders_carry_download_sources_for_the_missing_models_dialog():
    expected = {
        "wan2.2_i2v_high_noise_14B_Q5_0.gguf": ("https://huggingface.co/QuantStack/Wan2.2-I2V-A14B-GGUF/resolve/main/"
                                                "HighNoise/Wan2.2-I2V-A14B-HighNoise-Q5_0.gguf", "diffusion_models"),
        "wan2.2_i2v_low_noise_14B_Q5_0.gguf": ("https://huggingface.co/QuantStack/Wan2.2-I2V-A14B-GGUF/resolve/main/"
                                               "LowNoise/Wan2.2-I2V-A14B-LowNoise-Q5_0.gguf", "diffusion_models"),
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve"
                                                   "/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled"
                                                   ".safetensors", "text_encoders"),
        "wan_2.1_vae.safetensors": ("https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/"
                                    "split_files/vae/wan_2.1_vae.safetensors", "vae"),
        "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors": (
            "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main/Lightx2v/"
            "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors", "loras"),
    }
    top = {m["name"]: (m["url"], m["directory"]) for m in UI["models"]}
    assert top == expected
    loaders = [n for n in UI["nodes"] if n["type"] in ("WanUnetLoaderGGUF", "WanTextEncoderLoader", "VAELoader",
                                                       "LoraLoaderModelOnly")]
    assert len(loaders) == 6
    for node in loaders:
        [model] = node["properties"]["models"]
        assert model["name"] in node["widgets_values"] and expected[model["name"]] == (model["url"], model["directory"])


def test_ui_file_is_what_build_ui_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_ui", WORKFLOWS / "build_ui.py")
    build_ui = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_ui)
    assert build_ui.build(API, OBJECT_INFO, build_ui.LAYOUTS["wan22_i2v_gguf"]) == UI


# -- hand-made UI graphs ----------------------------------------------------------------------------
class Graph:
    """A UI-format graph built node by node, links numbered as the editor does."""

    def __init__(self) -> None:
        self.nodes: dict[int, dict] = {}
        self.links: list[list] = []

    def add(self, node_id: int, kind: str, values: list | dict | None = None, outputs: tuple = (), mode: int = 0,
            title: str | None = None, **extra) -> Graph:
        outs = list(outputs) or list((OBJECT_INFO.get(kind) or {}).get("output") or [])
        self.nodes[node_id] = {"id": node_id, "type": kind, "pos": [0, 0], "size": [200, 100], "flags": {},
                               "order": len(self.nodes), "mode": mode, "inputs": [],
                               "outputs": [{"name": t, "type": t, "links": []} for t in outs],
                               "properties": {}, "widgets_values": [] if values is None else values, **extra}
        if title:
            self.nodes[node_id]["title"] = title
        return self

    def link(self, origin: int, slot: int, target: int, name: str, kind: str, widget: bool = False) -> Graph:
        link_id = len(self.links) + 1
        self.links.append([link_id, origin, slot, target, len(self.nodes[target]["inputs"]), kind])
        slot_entry = {"name": name, "type": kind, "link": link_id}
        if widget:
            slot_entry["widget"] = {"name": name}
        self.nodes[target]["inputs"].append(slot_entry)
        self.nodes[origin]["outputs"][slot]["links"].append(link_id)
        return self

    def ui(self) -> dict:
        return {"last_node_id": max(self.nodes), "last_link_id": len(self.links), "nodes": list(self.nodes.values()),
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}

    def api(self, info: dict | None = None, **kw) -> dict:
        return ui_to_api(self.ui(), info or OBJECT_INFO, **kw)


KSAMPLER_VALUES = [123, "randomize", 20, 7.5, "euler", "normal", 1.0]


def txt2img() -> Graph:
    g = Graph().add(1, "CheckpointLoaderSimple", ["sd15.safetensors"])
    g.add(2, "CLIPTextEncode", ["a cat"], title="Positive").add(3, "CLIPTextEncode", ["ugly"])
    g.add(4, "EmptyLatentImage", [512, 768, 1]).add(5, "KSampler", list(KSAMPLER_VALUES))
    g.add(6, "VAEDecode").add(7, "SaveImage", ["ComfyUI"])
    g.link(1, 1, 2, "clip", "CLIP").link(1, 1, 3, "clip", "CLIP").link(1, 0, 5, "model", "MODEL")
    g.link(2, 0, 5, "positive", "CONDITIONING").link(3, 0, 5, "negative", "CONDITIONING")
    g.link(4, 0, 5, "latent_image", "LATENT").link(5, 0, 6, "samples", "LATENT").link(1, 2, 6, "vae", "VAE")
    return g.link(6, 0, 7, "images", "IMAGE")


def test_widget_values_follow_object_info_order_with_the_seed_control_value_skipped():
    api = txt2img().api()
    assert api["5"] == {"class_type": "KSampler", "_meta": {"title": "KSampler"}, "inputs": {
        "seed": 123, "steps": 20, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}}
    assert api["2"]["_meta"]["title"] == "Positive" and api["3"]["_meta"]["title"] == "CLIP Text Encode (Prompt)"
    assert api["4"]["inputs"] == {"width": 512, "height": 768, "batch_size": 1}
    assert api["7"]["inputs"] == {"filename_prefix": "ComfyUI", "images": ["6", 0]}


def test_control_widgets_per_input_kind():
    info = {"Custom": {"input": {"required": {
        "a": ["INT", {"default": 1}], "seed": ["INT", {}], "b": ["FLOAT", {"control_after_generate": True}],
        "c": [["x", "y"], {"control_after_generate": True}], "noise_seed": ["INT", {"control_after_generate": False}],
        "d": ["STRING", {}]}}, "output": []}}
    g = Graph().add(1, "Custom", [5, 9, "fixed", 0.5, "increment", "y", "fixed", "", 77, "end"])
    assert g.api(info)["1"]["inputs"] == {"a": 5, "seed": 9, "b": 0.5, "c": "y", "noise_seed": 77, "d": "end"}


def test_upload_widget_value_and_output_folder_annotation():
    g = Graph().add(1, "LoadImage", ["start.png", "image"]).add(2, "LoadImageOutput", ["render.png", "image"])
    g.add(3, "LoadImageOutput", ["old.png [temp]", "image"])
    api = g.api()
    assert api["1"]["inputs"] == {"image": "start.png"}
    assert api["2"]["inputs"] == {"image": "render.png [output]"} and api["3"]["inputs"] == {"image": "old.png [temp]"}


def test_missing_values_take_defaults_and_dict_values_map_by_name():
    g = Graph().add(1, "EmptyLatentImage", [640]).add(2, "EmptyLatentImage", {"height": 64, "width": 32})
    api = g.api()
    assert api["1"]["inputs"] == {"width": 640, "height": 512, "batch_size": 1}
    assert api["2"]["inputs"] == {"width": 32, "height": 64, "batch_size": 1}


def test_converted_widget_fed_by_a_link_keeps_its_value_slot():
    g = Graph().add(1, "PrimitiveInt", [720, "fixed"]).add(2, "EmptyLatentImage", [512, 999, 2])
    g.link(1, 0, 2, "height", "INT", widget=True)
    assert g.api()["2"]["inputs"] == {"width": 512, "height": ["1", 0], "batch_size": 2}


def test_primitive_node_value_reaches_targets_directly_and_through_reroutes():
    g = txt2img().add(8, "PrimitiveNode", [4242, "fixed"], outputs=("INT",), title="Seed")
    g.add(9, "Reroute", outputs=("*",)).add(10, "EmptyLatentImage", [512, 512, 1])
    g.link(8, 0, 5, "seed", "INT", widget=True).link(8, 0, 9, "", "*").link(9, 0, 10, "width", "INT", widget=True)
    api = g.api()
    assert api["5"]["inputs"]["seed"] == 4242 and api["10"]["inputs"]["width"] == 4242
    assert not {"8", "9"} & set(api)


def test_reroute_chains_resolve_to_the_source():
    g = txt2img().add(8, "Reroute", outputs=("*",)).add(9, "Reroute", outputs=("*",))
    g.nodes[6]["inputs"] = [i for i in g.nodes[6]["inputs"] if i["name"] != "vae"]
    g.link(1, 2, 8, "", "*").link(8, 0, 9, "", "*").link(9, 0, 6, "vae", "VAE")
    api = g.api()
    assert api["6"]["inputs"]["vae"] == ["1", 2] and "8" not in api and "9" not in api


def test_muted_nodes_are_dropped_with_the_inputs_they_fed():
    g = txt2img()
    g.nodes[3]["mode"] = 2
    api = g.api()
    assert "3" not in api and "negative" not in api["5"]["inputs"] and api["5"]["inputs"]["positive"] == ["2", 0]


def test_bypassed_nodes_pass_the_matching_input_through():
    g = Graph().add(1, "UNETLoader", ["high.gguf", "default"]).add(2, "LoraLoaderModelOnly", ["l.safetensors", 1.0],
                                                                    mode=4)
    g.add(3, "ModelSamplingSD3", [8.0]).add(4, "ImageScale", ["nearest-exact", 64, 64, "disabled"], mode=4)
    g.add(5, "LoadImage", ["a.png", "image"]).add(6, "VAEDecode")
    g.link(1, 0, 2, "model", "MODEL").link(2, 0, 3, "model", "MODEL")
    g.link(5, 0, 4, "image", "IMAGE").link(4, 0, 6, "samples", "LATENT")  # no LATENT input to pass: dropped
    api = g.api()
    assert api["3"]["inputs"] == {"shift": 8.0, "model": ["1", 0]}
    assert "2" not in api and "4" not in api and "samples" not in api["6"]["inputs"]


def test_notes_are_dropped_and_unknown_types_are_named():
    g = txt2img().add(8, "Note", ["hello"]).add(9, "MarkdownNote", ["# hi"])
    assert set(g.api()) == {"1", "2", "3", "4", "5", "6", "7"}
    g.add(12, "Foo", [1], outputs=("IMAGE",))
    with pytest.raises(InvalidInput, match="node 12 has unknown type 'Foo'") as err:
        g.api()
    assert err.value.fields["field"] == "workflow"
    g.nodes[12]["mode"] = 2  # a muted unknown node does not run: fine
    assert "12" not in g.api()


def test_group_nodes_are_refused_by_name():
    g = txt2img().add(8, "workflow>My group")
    with pytest.raises(InvalidInput, match="node 8 is a legacy group node .*subgraph"):
        g.api()


def test_dynamic_prompts_and_filename_prefix_replacements():
    g = txt2img()
    g.nodes[2]["widgets_values"] = ["a {red|blue} car /* draft */ at night // old idea"]
    g.nodes[7]["widgets_values"] = ["out/%Positive.text%/%EmptyLatentImage.width%_%date:yyyy%"]
    g.nodes[4]["properties"]["Node name for S&R"] = "EmptyLatentImage"
    api = g.api(rng=random.Random(1))
    assert api["2"]["inputs"]["text"] in ("a red car  at night ", "a blue car  at night ")
    prefix = api["7"]["inputs"]["filename_prefix"]
    year = __import__("datetime").date.today().year  # the raw widget text, made file-name safe
    assert prefix == f"out/a {{red_blue}} car __ draft __ at night __ old idea/512_{year}"


def test_legacy_force_input_values_are_migrated():
    info = {"Old": {"input": {"required": {"x": ["INT", {"forceInput": True}], "y": ["INT", {}]}}, "output": []}}
    assert Graph().add(1, "Old", [3, 4]).api(info)["1"]["inputs"] == {"y": 4}
    assert Graph().add(1, "Old", [4]).api(info)["1"]["inputs"] == {"y": 4}


def subgraph_workflow() -> dict:
    inner = Graph().add(1, "EmptyLatentImage", [512, 512, 1]).add(2, "KSampler", list(KSAMPLER_VALUES))
    inner.nodes[1]["inputs"] = [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 10}]
    inner.nodes[2]["inputs"] = [{"name": "model", "type": "MODEL", "link": 11},
                                {"name": "latent_image", "type": "LATENT", "link": 12}]
    links = [{"id": 10, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 0, "type": "INT"},
             {"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "MODEL"},
             {"id": 12, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 1, "type": "LATENT"},
             {"id": 13, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"}]
    sub_id = "6f2c1d9e-1111-4222-8333-944455556666"
    outer = Graph().add(1, "CheckpointLoaderSimple", ["a.safetensors"]).add(2, sub_id, [320], outputs=("LATENT",))
    outer.add(3, "VAEDecode")
    outer.link(1, 0, 2, "model", "MODEL").link(2, 0, 3, "samples", "LATENT").link(1, 2, 3, "vae", "VAE")
    ui = outer.ui()
    ui["definitions"] = {"subgraphs": [{
        "id": sub_id, "name": "Sampler", "nodes": list(inner.nodes.values()), "links": links,
        "inputs": [{"id": "a", "name": "model", "type": "MODEL", "linkIds": [11]},
                   {"id": "b", "name": "width", "type": "INT", "linkIds": [10]}],
        "outputs": [{"id": "c", "name": "LATENT", "type": "LATENT", "linkIds": [13]}]}]}
    return ui


def test_subgraphs_are_expanded_with_path_ids():
    api = ui_to_api(subgraph_workflow(), OBJECT_INFO)
    assert set(api) == {"1", "2:1", "2:2", "3"}
    assert api["2:1"]["inputs"]["width"] == 320
    assert api["2:2"]["inputs"]["model"] == ["1", 0] and api["2:2"]["inputs"]["latent_image"] == ["2:1", 0]
    assert api["3"]["inputs"]["samples"] == ["2:2", 0]


@pytest.mark.skipif(not TEMPLATES.is_dir(), reason="comfyui-workflow-templates is not installed")
def test_comfyui_wan22_templates_convert():
    plain = ui_to_api(json.loads((TEMPLATES / "video_wan2_2_14B_i2v.json").read_text()), OBJECT_INFO)
    assert len(plain) == 17 and plain["86"]["inputs"]["end_at_step"] == 2  # the bypassed group is left out
    assert plain["104"]["inputs"]["model"] == ["101", 0] and plain["108"]["inputs"]["video"] == ["94", 0]
    sub = ui_to_api(json.loads((TEMPLATES / "03_video_wan2_2_14B_i2v_subgraphed.json").read_text()), OBJECT_INFO)
    assert sub["116:98"]["inputs"]["start_image"] == ["97", 0] and sub["108"]["inputs"]["video"] == ["116:94", 0]
    assert (sub["116:98"]["inputs"]["width"], sub["116:98"]["inputs"]["height"]) == (1280, 720)


@pytest.mark.parametrize("bad", [
    {"nodes": "x", "links": []}, {"nodes": [5], "links": []}, {"nodes": [{"id": 1}], "links": []},
    {"nodes": [{"id": 1, "type": "VAEDecode", "inputs": [{"name": "vae", "type": "VAE", "link": 9}]}], "links": []},
    {"nodes": [], "links": [[1, 2]]}, {"nodes": [], "links": {}},
])
def test_malformed_ui_graphs_raise_invalid_input(bad):
    with pytest.raises(InvalidInput):
        ui_to_api(bad, OBJECT_INFO)


def test_randomly_damaged_ui_files_raise_only_invalid_input():
    rng = random.Random(7)
    junk = [None, 0, -10, 3.5, "", "x", [], {}, [1, 2], {"a": 1}, True]
    for _ in range(400):
        ui = copy.deepcopy(UI)
        for _ in range(rng.randint(1, 4)):
            node = rng.choice(ui["nodes"])
            key = rng.choice(["inputs", "outputs", "widgets_values", "mode", "type", "id", "title", "links"])
            if key == "links":
                ui["links"][rng.randrange(len(ui["links"]))] = rng.choice(junk)
            elif key == "inputs" and node["inputs"]:
                node["inputs"][0][rng.choice(["link", "name", "type"])] = rng.choice(junk)
            else:
                node[key] = rng.choice(junk)
        try:
            ui_to_api(ui, OBJECT_INFO)
        except InvalidInput:
            pass


# -- against the live ComfyUI -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_info(comfy) -> dict:
    return comfy.client.object_info()


@pytest.mark.comfyui
@pytest.mark.parametrize("node_type", sorted({n["class_type"] for n in API.values()}))
def test_live_comfyui_registers_every_node_type_of_the_workflow(live_info, node_type):
    assert node_type in live_info


@pytest.mark.comfyui
def test_ui_file_converts_with_live_object_info(live_info):
    assert ui_to_api(UI, live_info) == API


@pytest.mark.comfyui
def test_object_info_snapshot_has_the_live_input_layout(live_info):
    from worker.object_info import ordered_specs, widget_slots

    for node_type, entry in OBJECT_INFO.items():
        assert node_type in live_info, f"{node_type} vanished from ComfyUI: refresh tests/data/object_info.json"
        live, saved = live_info[node_type], entry
        assert [n for n, _, _ in ordered_specs(live)] == [n for n, _, _ in ordered_specs(saved)], node_type
        assert [s.name for s in widget_slots(live)] == [s.name for s in widget_slots(saved)], node_type
        assert live["output"] == saved["output"], node_type


def test_ui_groups_frame_their_nodes_without_overlap():
    def box(x: float, y: float, w: float, h: float) -> tuple:
        return x, y, x + w, y + h

    groups = {g["title"]: box(*g["bounding"]) for g in UI["groups"]}
    for node in UI["nodes"]:
        n = box(*node["pos"], *node["size"])
        inside = [t for t, g in groups.items() if g[0] <= n[0] and n[2] <= g[2] and g[1] <= n[1] and n[3] <= g[3]]
        touching = [t for t, g in groups.items() if g[0] < n[2] and n[0] < g[2] and g[1] < n[3] and n[1] < g[3]]
        assert len(inside) <= 1 and touching == inside, (node["title"], inside, touching)
