"""WAN serverless node pack: GGUF loaders for WAN 2.2, umt5 of any size, fetch on first use."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
