"""Token-model precisions for decoding: ``fp32``, ``bf16`` and ``int8``.

Decoding one frame at batch 1 reads every weight once and does little arithmetic on it, so its
speed follows the bytes per weight: bf16 halves them (and doubles speed on CPUs with bf16 units
and on GPUs), int8 quarters them. ``int8`` quantizes every Linear layer's weights to int8 with one
scale per output channel (symmetric) and quantizes activations per call (fbgemm's dynamic int8
GEMM, CPU only); embeddings, norms, attention and the KV cache stay fp32. Its cost in NLL is
measured by ``pianogen eval --precision int8``.

``fp32`` on the CPU also stores every Linear weight [out, in] column-major (each input feature's
weights contiguous): a one-row product then streams the weights as MKL's fastest one-row kernel
reads them, ~10 % more frames/s for the novel model on an AVX2 EPYC (``pianogen bench``'s
``decode_vs_plain``). The values and the module types are unchanged. bf16 keeps (or gets back) the
row-major layout: its CPU kernels run ~10x slower on column-major weights.
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import nn

from pianogen.errors import PianogenError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


# fbgemm's packed weights are a TorchScript object, which torch.compile cannot pass to an op: a compiled
# graph calls pianogen::int8_linear with an integer handle instead, looked up here (dropped with the layer)
_PACKED: dict[int, torch.ScriptObject] = {}
_HANDLES = itertools.count()


@torch.library.custom_op("pianogen::int8_linear", mutates_args=())
def int8_linear(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """x [..., in] @ the int8 weights registered under ``handle`` -> [..., out_features] (fp32)."""
    return torch.ops.quantized.linear_dynamic(x, _PACKED[handle], True)


@int8_linear.register_fake
def _(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], out_features)


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (per-output-channel scales) and per-call int8 activations.

    reduce_range: activations use 7 bits, as torch's dynamic quantization does on x86, so that AVX2's
    16-bit pairwise sums (vpmaddubsw) cannot saturate.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float().cpu()
        scale = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        qweight = torch.quantize_per_channel(weight, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        self.packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self._register()

    def _register(self) -> None:
        self.handle = next(_HANDLES)
        _PACKED[self.handle] = self.packed
        weakref.finalize(self, _PACKED.pop, self.handle, None)

    def __setstate__(self, state: dict) -> None:  # a deep copy packs its own weights: a handle of its own
        super().__setstate__(state)
        self._register()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return int8_linear(x.float(), self.handle, self.out_features)
        return torch.ops.quantized.linear_dynamic(x.float(), self.packed, True)

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 weight [out, in] this layer multiplies by (what the int8 values and scales stand for)."""
        qweight, _ = torch.ops.quantized.linear_unpack(self.packed)
        return qweight.dequantize()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights per channel"


def quantize_linears(model: nn.Module, keep: tuple[str, ...] = ()) -> nn.Module:
    """Swap every nn.Linear of ``model`` (in place) for an Int8Linear, except children named in ``keep``."""
    for name, child in list(model.named_children()):
        if name in keep:
            continue
        if type(child) is nn.Linear:
            setattr(model, name, Int8Linear(child))
        else:
            quantize_linears(child)
    return model


def lay_out_linears(model: nn.Module, column_major: bool) -> nn.Module:
    """Every nn.Linear weight [out, in] of ``model`` re-laid out in place: column-major (the transpose
    of a contiguous [in, out] tensor) or row-major (contiguous); same shape, values and Parameters."""
    with torch.no_grad():
        for module in model.modules():
            if type(module) is nn.Linear:
                weight = module.weight.data
                module.weight.data = weight.t().contiguous().t() if column_major else weight.contiguous()
    return model


def in_precision(model: nn.Module, precision: str) -> nn.Module:
    """The token model converted in place to ``precision`` and returned; logits are sampled in fp32.

    fp32: Linear weights column-major on the CPU. bf16: weights (and so the KV cache) in bfloat16.
    int8: Linear weights in int8 (CPU only); a "concat" combine map stays fp32, since one-step decoding
    folds it into the embedding tables.
    """
    if precision not in PRECISIONS:
        raise PianogenError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp32":
        model = model.float()
        return lay_out_linears(model, column_major=next(model.parameters()).device.type == "cpu")
    if precision == "bf16":
        return lay_out_linears(model.to(torch.bfloat16), column_major=False)
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise PianogenError(f"--precision int8 runs on the CPU only (the model is on {device}); "
                            f"use bf16 on {device.type}")
    return quantize_linears(model.float(), keep=("combine",))
