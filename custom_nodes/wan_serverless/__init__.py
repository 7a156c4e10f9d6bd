"""WAN serverless node pack: GGUF loaders for WAN 2.2, umt5 of any size, fetch on first use.

Inside ComfyUI this exports the node mappings, the web extension (``web/``) and registers the
``/model_fetch/*`` routes on the PromptServer. Outside it (tests, benchmarks) the pure-torch
modules such as ``dequant`` stay importable: the UI surface is only loaded when ComfyUI's
``folder_paths`` module is there, the routes and the model-lookup hook (lookup.py) only when a
PromptServer is running.

The pack needs ``model_fetch`` (the ``model-fetch`` wheel its requirements.txt names): without it the
pack does not load, and the error says which command installs it.
"""

import sys
from pathlib import Path

WEB_DIRECTORY = "./web"

try:
    import model_fetch  # noqa: F401  (the pack's one dependency outside ComfyUI)
except ModuleNotFoundError as exc:
    if exc.name != "model_fetch":
        raise
    raise ImportError(f"wan_serverless needs model_fetch, which is not installed in this Python: pip install -r "
                      f"{Path(__file__).resolve().parent / 'requirements.txt'} (docs/editor.md, 'Install into your "
                      f"ComfyUI')", name="model_fetch") from None

try:
    import folder_paths  # noqa: F401  (present only inside a ComfyUI process)
except ModuleNotFoundError as exc:
    if exc.name != "folder_paths":
        raise
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    _server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if _server is not None:  # a running ComfyUI server, not an in-process import by tests or tools
        from . import lookup, lora_report, pack_fetch, routes

        lookup.install(pack_fetch.context)  # every loader (stock, third-party, ours) lists and fetches known models
        lora_report.install()  # the stock LoRA loaders report keys applied / with no target
        routes.register(_server)
        pack_fetch.context()  # resolve the store now: its folders join ComfyUI's search paths at start-up

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
