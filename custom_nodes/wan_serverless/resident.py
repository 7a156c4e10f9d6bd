"""Resident mode for GGUF models: dequantize once at load, apply the LoRA once, keep plain weights.

The default (on-the-fly) path keeps every weight packed and dequantizes it, and applies its LoRA
patches, each time the layer runs: the least memory, paid for with work at every step. Resident mode
does that work once, when ComfyUI loads the model onto its compute device, and keeps the result there
as plain tensors in the compute dtype (bf16 on GPUs, float32 on CPU): no dequantization and no LoRA
patch per step. Unloading restores the packed (memory-mapped) originals.

Chosen with the environment variable ``WAN_GGUF_RESIDENT`` (read at each load):

* ``off`` (default): always on the fly;
* ``auto``: resident when the model is loaded completely and its plain weights fit in the device's
  free memory with ``WAN_GGUF_RESIDENT_RESERVE_MB`` (default 2048) to spare, else on the fly;
* ``on``: resident whenever the model is loaded completely (ComfyUI's own partial, "low VRAM"
  loads always stay on the fly).
"""

from __future__ import annotations

import logging

import torch

from .config import resident_mode, resident_reserve_bytes

log = logging.getLogger(__name__)

def resident_bytes(model: torch.nn.Module, dtype: torch.dtype, is_packed) -> int:
    """Bytes the model's packed weights take once dequantized to ``dtype``."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(p.numel() * size for p in model.parameters() if is_packed(p))


def decide(model: torch.nn.Module, device: torch.device | None, dtype: torch.dtype, full: bool, is_packed,
           free_memory) -> bool:
    """Whether this load goes resident (``free_memory(device)`` gives the device's free bytes)."""
    chosen = resident_mode()
    if chosen == "off" or device is None or not full:
        return False
    need = resident_bytes(model, dtype, is_packed)
    if need == 0:
        return False
    if chosen == "auto":
        free = free_memory(device)
        if need + resident_reserve_bytes() > free:
            log.info("resident mode: %.1f GiB of %s weights do not fit in %.1f GiB free on %s; dequantizing "
                     "on the fly", need / 2**30, dtype, free / 2**30, device)
            return False
    log.info("resident mode: dequantizing %.1f GiB of weights once to %s on %s", need / 2**30, dtype, device)
    return True
