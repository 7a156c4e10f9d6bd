"""ComfyUI integration of packed GGUF weights: the tensor type, the custom operations, LoRA patching.

* ``PackedTensor`` is a torch tensor whose shape and dtype are the logical ones (what ComfyUI's
  model detection, LoRA key mapping and memory estimates see) while its storage is the raw GGML
  blocks, usually a view of the memory-mapped file. Moves, detach and clone keep it packed; a
  dtype conversion or any other torch op computes on the dequantized values, so foreign code stays
  correct, only slower; in-place writes into it raise ``PackedWriteError``.
* ``PackedOps`` are ComfyUI custom operations (``model_options["custom_operations"]``) whose layers
  take packed weights as they are and dequantize them on the compute device when they run.
* ``PackedPatcher`` is a ModelPatcher that, instead of baking LoRA patches into a full-precision
  copy of a packed weight, hands the patch list to the weight; the layer applies it right after
  dequantizing. Backups are the original packed tensors, so ComfyUI's unpatch/partial-unload logic
  restores them unchanged.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

import torch

import comfy.lora
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.utils

from . import dequant, resident

log = logging.getLogger(__name__)

aten = torch.ops.aten

#: Same shape as the record ComfyUI's ModelPatcher keeps in ``backup``.
_Backup = collections.namedtuple("Dimension", ["weight", "inplace_update"])  # type: ignore[name-match]  # ComfyUI's own name


class PackedTensor(torch.Tensor):
    """A GGML-quantized weight: logical ``shape``/``dtype`` outside, packed blocks in ``packed``.

    ``patches`` is ``None`` or ``(key, patch_list)``: ComfyUI weight patches (LoRA and friends)
    to apply after dequantization, as ``comfy.lora.calculate_weight`` understands them.
    """

    packed: torch.Tensor
    qtype: dequant.QType
    patches: tuple[str, list] | None

    @staticmethod
    def __new__(cls, packed: torch.Tensor, qtype: dequant.QType, shape: tuple[int, ...],
                dtype: torch.dtype = torch.float16, patches: tuple[str, list] | None = None):
        return torch.Tensor._make_wrapper_subclass(cls, tuple(shape), dtype=dtype, device=packed.device,
                                                   requires_grad=False)

    def __init__(self, packed: torch.Tensor, qtype: dequant.QType, shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float16, patches: tuple[str, list] | None = None) -> None:
        self.packed = packed
        self.qtype = dequant.as_qtype(qtype)
        self.patches = patches

    def __repr__(self, *, tensor_contents=None) -> str:  # type: ignore[override]  # torch's wrapper-subclass protocol, not its stubs
        return (f"PackedTensor({self.qtype.name}, shape={tuple(self.shape)}, dtype={self.dtype}, "
                f"device={self.device}, packed_bytes={self.packed.nbytes}, patched={self.patches is not None})")

    @property
    def nbytes(self) -> int:  # type: ignore[override]  # ComfyUI sizes models by nbytes: count what is really held
        return self.packed.nbytes

    def data_ptr(self) -> int:
        return self.packed.data_ptr()

    def is_pinned(self) -> bool:  # type: ignore[override]  # aten.is_pinned is answered for the packed storage
        return self.packed.is_pinned()

    def with_packed(self, packed: torch.Tensor, *, patches: Any = ...) -> PackedTensor:
        """A new tensor over ``packed`` with this one's type, shape, dtype (and patches unless given)."""
        return PackedTensor(packed, self.qtype, tuple(self.shape), self.dtype,
                            self.patches if patches is ... else patches)

    def dequantize(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                   non_blocking: bool = False) -> torch.Tensor:
        """Plain tensor of the values (patches not applied), on ``device`` (default: where packed is)."""
        packed = self.packed if device is None else self.packed.to(device, non_blocking=non_blocking)
        return dequant.dequantize(packed, self.qtype, tuple(self.shape), dtype or self.dtype)

    # -- torch integration ---------------------------------------------------------------------------

    def __tensor_flatten__(self):
        return ["packed"], {"qtype": self.qtype, "shape": tuple(self.shape), "dtype": self.dtype,
                            "patches": self.patches}

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return PackedTensor(inner["packed"], meta["qtype"], meta["shape"], meta["dtype"], meta["patches"])

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]  # torch's wrapper-subclass protocol, not its stubs

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]  # torch's wrapper-subclass protocol, not its stubs
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is not None:
            return handler(*args, **kwargs)
        if _writes_packed(func, args, kwargs):
            raise PackedWriteError(f"{func} would modify a packed GGUF weight in place; work on "
                                   f"PackedTensor.dequantize() (a plain copy) instead")
        log.debug("PackedTensor: %s falls back to dequantization", func)
        return func(*_plain(args), **_plain(kwargs))


class PackedWriteError(TypeError):
    """An in-place torch op targeted a PackedTensor: packed blocks cannot be written value by value."""


def _writes_packed(func, args, kwargs) -> bool:
    for i, arg in enumerate(func._schema.arguments):
        info = arg.alias_info
        if info is not None and info.is_write:
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            if isinstance(value, PackedTensor):
                return True
    return False


def _plain(obj):
    """Replace PackedTensors in nested args by their (patched) values."""
    if isinstance(obj, PackedTensor):
        return materialize(obj, obj.dtype, obj.device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _same(t: PackedTensor, *args, **kwargs) -> PackedTensor:
    return t.with_packed(t.packed)


def _to_copy(t: PackedTensor, *, dtype=None, device=None, non_blocking=False, **kwargs):
    """A move keeps the blocks packed; a dtype conversion yields the (patched) values as a plain tensor."""
    device = torch.device(device) if device is not None else t.device
    if dtype is not None and dtype != t.dtype:
        return materialize(t, dtype, device, non_blocking)
    return t.with_packed(t.packed.to(device, non_blocking=non_blocking, copy=True))


def _clone(t: PackedTensor, **kwargs) -> PackedTensor:
    return t.with_packed(t.packed.clone())


def _copy_(dst, src, non_blocking=False):
    if isinstance(dst, PackedTensor):
        if not isinstance(src, PackedTensor) or src.qtype != dst.qtype or src.packed.shape != dst.packed.shape:
            raise TypeError(f"cannot copy {type(src).__name__} into a {dst.qtype.name} PackedTensor in place")
        dst.packed.copy_(src.packed, non_blocking=non_blocking)
        dst.patches = src.patches
        return dst
    return dst.copy_(materialize(src, dst.dtype, dst.device), non_blocking=non_blocking)


def _is_pinned(t: PackedTensor, device=None) -> bool:
    return t.packed.is_pinned()


def _to(t: PackedTensor, *args, dtype=None, device=None, non_blocking=False, copy=False, **kwargs):
    """``aten.to`` reaches us under inference mode (ComfyUI's ``Module.to`` during partial loads): a no-op
    stays the same packed tensor, a move stays packed, only a dtype change yields values."""
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, (torch.device, str)):
            device = arg
    device = torch.device(device) if device is not None else t.device
    if dtype is not None and dtype != t.dtype:
        return materialize(t, dtype, device, non_blocking)
    if device == t.device and not copy:
        return t
    return t.with_packed(t.packed.to(device, non_blocking=non_blocking, copy=copy))


def _shallow_copy_compatible(a, b) -> bool:
    """Answer the type question without dequantizing anything."""
    return type(a) is type(b)


_HANDLERS: dict[Any, Callable[..., Any]] = {
    aten.detach.default: _same,
    aten.alias.default: _same,
    aten._to_copy.default: _to_copy,
    aten.clone.default: _clone,
    aten.copy_.default: _copy_,
    aten.is_pinned.default: _is_pinned,
    aten.to.dtype_layout: _to,
    aten.to.device: _to,
    aten.to.dtype: _to,
    aten._has_compatible_shallow_copy_type.default: _shallow_copy_compatible,
}


def materialize(weight: torch.Tensor | None, dtype: torch.dtype | None, device: torch.device | str | None,
                non_blocking: bool = False, copy: bool = False) -> torch.Tensor | None:
    """A plain compute-ready tensor: dequantized on ``device``, patches applied, cast to ``dtype``.

    A packed weight always yields a new tensor; a plain one is returned as is when it already has the
    dtype and device, unless ``copy`` (needed when the caller modifies the result, as patches do).
    """
    if weight is None:
        return None
    if not isinstance(weight, PackedTensor):
        return comfy.model_management.cast_to(weight, dtype, device, non_blocking=non_blocking, copy=copy)
    device = torch.device(device) if device is not None else weight.device
    dtype = dtype or weight.dtype
    if weight.patches is None:
        return weight.dequantize(dtype, device, non_blocking=non_blocking)
    key, patches = weight.patches
    work_dtype = comfy.model_management.lora_compute_dtype(device)
    values = weight.dequantize(work_dtype, device, non_blocking=non_blocking)
    values = comfy.lora.calculate_weight(patches, values, key, intermediate_dtype=work_dtype)
    return values.to(dtype)


def is_packed(t: object) -> TypeGuard[PackedTensor]:
    return isinstance(t, PackedTensor)


class PackedLayer:
    """Mixin for ComfyUI op layers: accept packed weights at load, dequantize them at run time."""

    # What the mixin uses of the ComfyUI layer it precedes (declared for the type checker only).
    weight: torch.Tensor | None
    weight_function: list[Callable[[torch.Tensor], torch.Tensor]]
    bias_function: list[Callable[[torch.Tensor], torch.Tensor]]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Take the given tensors as they are (packed, or the file's own dtype, usually mmap-backed):
        # no copy into freshly allocated parameters, casting happens when the layer runs.
        for name in ("weight", "bias"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.nn.Parameter(state_dict[key], requires_grad=False))
            elif getattr(self, name, None) is not None and name == "weight":
                missing_keys.append(key)
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix):] not in ("weight", "bias") and "." not in key[len(prefix):]:
                unexpected_keys.append(key)

    def packed_params(self) -> bool:
        return is_packed(self.weight) or is_packed(getattr(self, "bias", None))

    def packed_weight_bias(self, input: torch.Tensor | None = None, dtype: torch.dtype | None = None,
                           device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias for one call: dequantized, patched, then ComfyUI's weight/bias functions."""
        if input is not None:
            dtype = dtype or input.dtype
            device = device or input.device
        non_blocking = comfy.model_management.device_supports_non_blocking(device)
        # ComfyUI's weight/bias functions (low-VRAM LoRA patches) add into the tensor they get: a plain
        # parameter must be copied first, or every call would patch the stored weight once more.
        weight = materialize(self.weight, dtype, device, non_blocking, copy=bool(self.weight_function))
        if weight is None:
            raise ValueError("a packed layer has no weight (its state dict did not bring one)")
        bias = materialize(getattr(self, "bias", None), dtype, device, non_blocking, copy=bool(self.bias_function))
        for f in self.weight_function:
            weight = f(weight)
        if bias is not None:
            for f in self.bias_function:
                bias = f(bias)
        return weight, bias


class PackedOps(comfy.ops.manual_cast):
    """Custom operations for models whose state dict holds PackedTensors."""

    class Linear(PackedLayer, comfy.ops.manual_cast.Linear):
        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            torch.nn.Module.__init__(self)  # no allocation: the state dict brings the tensors
            self.in_features, self.out_features = in_features, out_features
            self.weight = None
            self.bias = None

        def forward_comfy_cast_weights(self, input):
            if not self.packed_params():
                return super().forward_comfy_cast_weights(input)
            weight, bias = self.packed_weight_bias(input)
            return torch.nn.functional.linear(input, weight, bias)

    class PackedConv(PackedLayer):
        """Conv1d/2d/3d: torch's own ``_conv_forward`` on the dequantized weight."""

        _conv_forward: Callable[..., torch.Tensor]  # torch's ConvNd, which this mixin precedes

        def forward_comfy_cast_weights(self, input):
            if not self.packed_params():
                return super().forward_comfy_cast_weights(input)  # type: ignore[misc]  # the ComfyUI ConvNd's
            return self._conv_forward(input, *self.packed_weight_bias(input))

    class Conv1d(PackedConv, comfy.ops.manual_cast.Conv1d):
        pass

    class Conv2d(PackedConv, comfy.ops.manual_cast.Conv2d):
        pass

    class Conv3d(PackedConv, comfy.ops.manual_cast.Conv3d):
        pass

    class Embedding(PackedLayer, comfy.ops.manual_cast.Embedding):
        def forward_comfy_cast_weights(self, input, out_dtype=None):
            w = self.weight
            if not is_packed(w):  # an embedding has no bias: packed means a packed weight
                return super().forward_comfy_cast_weights(input, out_dtype=out_dtype)
            dtype = out_dtype or w.dtype  # as the stock layer: the requested dtype, else the weight's
            if (w.patches is None and not self.weight_function and self.max_norm is None
                    and w.shape[-1] % dequant.block_layout(w.qtype)[0] == 0):
                # Rows are whole blocks: decode only the rows that are looked up.
                rows = w.packed.view(w.shape[0], -1)[input.reshape(-1).to(w.device)].to(input.device)
                values = dequant.dequantize(rows, w.qtype, (rows.shape[0], w.shape[1]), dtype)
                return values.view(*input.shape, w.shape[1])
            weight, _ = self.packed_weight_bias(dtype=dtype, device=input.device)
            return torch.nn.functional.embedding(input, weight, self.padding_idx, self.max_norm, self.norm_type,
                                                 self.scale_grad_by_freq, self.sparse)


class PackedPatcher(comfy.model_patcher.ModelPatcher):
    """ModelPatcher that patches packed weights at compute time instead of materializing them.

    In resident mode (``resident.py``) a complete load instead dequantizes each packed weight once, with
    its patches, to the compute dtype on the device; unloading restores the packed originals."""

    #: Compute dtype while a resident load is in progress, else None.
    resident_dtype: torch.dtype | None = None

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        dtype = self.model.manual_cast_dtype or self.model.get_dtype()
        if resident.decide(self.model, device_to, dtype, full_load, is_packed, comfy.model_management.get_free_memory):
            self.resident_dtype = dtype
        try:
            return super().load(device_to, lowvram_model_memory=lowvram_model_memory,
                                force_patch_weights=force_patch_weights, full_load=full_load)
        finally:
            self.resident_dtype = None

    def patch_weight_to_device(self, key, device_to=None, inplace_update=False):
        if self.resident_dtype is not None and device_to is not None:
            original = self.backup[key].weight if key in self.backup else comfy.utils.get_attr(self.model, key)
            if is_packed(original):
                self._make_resident(key, original, device_to)
                return
        if key not in self.patches:
            return
        weight, _, _ = comfy.model_patcher.get_key_weight(self.model, key)
        if not is_packed(weight):
            return super().patch_weight_to_device(key, device_to=device_to, inplace_update=inplace_update)
        if key not in self.backup:
            self.backup[key] = _Backup(weight, False)  # the packed original itself: nothing is copied
        original = self.backup[key].weight
        packed = original.packed if device_to is None else original.packed.to(device_to)
        patched = original.with_packed(packed, patches=(key, list(self.patches[key])))
        comfy.utils.set_attr_param(self.model, key, patched)

    def _make_resident(self, key: str, original: PackedTensor, device_to) -> None:
        """Replace a packed weight by its dequantized, patched values on ``device_to`` (backup: the original)."""
        if key not in self.backup:
            self.backup[key] = _Backup(original, False)
        patches = (key, list(self.patches[key])) if key in self.patches else None
        value = materialize(original.with_packed(original.packed, patches=patches), self.resident_dtype, device_to)
        comfy.utils.set_attr_param(self.model, key, value)


def adopt_patcher(patcher: comfy.model_patcher.ModelPatcher) -> PackedPatcher:
    """Turn a freshly built ModelPatcher (nobody else holds it yet) into a PackedPatcher."""
    patcher.__class__ = PackedPatcher
    return patcher


def packed_summary(model: torch.nn.Module) -> dict[str, int]:
    """Count of parameters per storage kind (GGML type name or torch dtype) in a model."""
    counts: dict[str, int] = {}
    for p in model.parameters():
        kind = p.qtype.name if is_packed(p) else str(p.dtype).replace("torch.", "")
        counts[kind] = counts.get(kind, 0) + 1
    return counts
