"""Node definitions from ``/object_info`` as the graph editor reads them: input order, and which
inputs are widgets (``widgets_values`` positions, including the frontend's extra control values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput

WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "COLOR", "IMAGECOMPARE",
                "CHART", "GALLERIA", "TEXTAREA", "WEBCAM", "AUDIOUPLOAD", "AUDIO_UI", "AUDIO_RECORD", "LOAD_3D",
                "PREVIEW_3D", "COMFY_DYNAMICCOMBO_V3"}
NOT_SERIALIZED = {"IMAGEUPLOAD", "AUDIOUPLOAD", "AUDIO_UI"}  # buttons / players: a widgets_values slot, no API input

@dataclass(frozen=True)
class WidgetSlot:
    """One entry of a node's ``widgets_values``: its name, default, whether it becomes an API input."""

    name: str
    default: Any = None
    serialize: bool = True
    dynamic_prompts: bool = False
    folder: str = "input"  # image_folder of upload combos: values get " [output]" annotations
    extra: bool = False  # control_after_generate / control_filter_list


def is_widget_input(spec: list[Any]) -> bool:
    kind, opts = _kind(spec), spec_options(spec)
    return (opts.get("widgetType") or kind) in WIDGET_TYPES and not opts.get("forceInput")


def _kind(spec: Any) -> str:
    head = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return "COMBO" if isinstance(head, list) else str(head)


def spec_options(spec: Any) -> dict[str, Any]:
    """The options dict of an ``/object_info`` input spec (``[type, {options}]``), or ``{}``."""
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 else None
    return opts if isinstance(opts, dict) else {}


def ordered_specs(info: dict[str, Any]) -> list[tuple[str, list[Any], bool]]:
    """``(name, spec, optional)`` in the frontend's order, with the inputs the frontend adds."""
    inputs = info.get("input") or {}
    required = dict(inputs.get("required") or {})
    optional = {k: v for k, v in (inputs.get("optional") or {}).items() if k not in required}
    for name, spec in list(required.items()):
        opts = spec_options(spec)
        if any(opts.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")):
            required["upload"] = ["IMAGEUPLOAD", {**opts, "imageInputName": name}]
            break
    # (audio nodes also get trailing audioUI/upload widgets: after every input, so they change nothing here)
    for name, spec in optional.items():
        if spec_options(spec).get("defaultInput"):
            optional[name] = [spec[0], {**spec_options(spec), "forceInput": True}]
    specs = {**{k: (v, False) for k, v in required.items()}, **{k: (v, True) for k, v in optional.items()}}
    order = info.get("input_order")
    if not isinstance(order, dict):
        return [(k, v, o) for k, (v, o) in specs.items()]
    out = [(k, *specs[k]) for k in order.get("required") or [] if k in specs and not specs[k][1]]
    out += [(k, *specs[k]) for k in order.get("optional") or [] if k in specs and specs[k][1]]
    seen = {k for k, _, _ in out}
    return out + [(k, v, o) for k, (v, o) in specs.items() if k not in seen]


def widget_slots(info: dict[str, Any]) -> list[WidgetSlot]:
    """Every ``widgets_values`` position of a node of this definition, in order."""
    slots: list[WidgetSlot] = []
    for name, spec, _ in ordered_specs(info):
        if not is_widget_input(spec):
            continue
        kind, opts = spec_options(spec).get("widgetType") or _kind(spec), spec_options(spec)
        if kind == "COMFY_DYNAMICCOMBO_V3":
            raise InvalidInput("workflow", f"node type '{info.get('name')}' uses a dynamic combo input ('{name}'), "
                                           "which this converter does not support; send the API-format export")
        slots.append(WidgetSlot(name, _default(kind, spec), kind not in NOT_SERIALIZED,
                                opts.get("dynamicPrompts") is True, str(opts.get("image_folder") or "input")))
        control = opts.get("control_after_generate")
        if kind == "INT" and control is None:
            control = name in ("seed", "noise_seed")
        if control and kind in ("INT", "FLOAT", "COMBO"):
            slots.append(WidgetSlot("control_after_generate", "fixed", False, extra=True))
            if kind == "COMBO" and not opts.get("multi_select"):
                slots.append(WidgetSlot("control_filter_list", "", False, extra=True))
    return slots


def _default(kind: str, spec: list[Any]) -> Any:
    opts = spec_options(spec)
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        choices = spec[0] if isinstance(spec[0], list) else opts.get("options") or []
        return choices[0] if choices else None
    return {"INT": 0, "FLOAT": 0, "BOOLEAN": False, "STRING": ""}.get(kind)



def migrate_values(info: dict[str, Any], slots: list[WidgetSlot], values: list[Any]) -> list[Any]:
    """The frontend's ``migrateWidgetsValues``: drop values saved for forceInput inputs by old versions."""
    names = {s.name for s in slots}
    specs = [(n, s) for n, s, _ in ordered_specs({**info, "input_order": None})
             if n in names or spec_options(s).get("forceInput")]
    if not any(spec_options(s).get("forceInput") for _, s in specs):
        return values
    width = sum(2 if spec_options(s).get("control_after_generate") or n in ("seed", "noise_seed") else 1 for n, s in specs)
    if width != len(values):
        return values
    return [v for i, v in enumerate(values) if i >= len(specs) or not spec_options(specs[i][1]).get("forceInput")]


