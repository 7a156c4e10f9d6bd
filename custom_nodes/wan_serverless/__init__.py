"""WAN serverless node pack: GGUF loaders for WAN 2.2, umt5 of any size, fetch on first use.

Inside ComfyUI this exports the node mappings. Outside it (tests, benchmarks) the pure-torch
modules such as ``dequant`` stay importable: the UI surface is only loaded when ComfyUI's
``folder_paths`` module is there.
"""

try:
    import folder_paths  # noqa: F401  (present only inside a ComfyUI process)
except ModuleNotFoundError as exc:
    if exc.name != "folder_paths":
        raise
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
