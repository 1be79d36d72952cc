"""Token-model precisions for decoding: ``fp32``, ``bf16`` and ``int8``.

Decoding one frame at batch 1 reads every weight once and does little arithmetic on it, so its
speed follows the bytes per weight: bf16 halves them (and doubles speed on CPUs with bf16 units
and on GPUs), int8 quarters them. ``int8`` quantizes every Linear layer's weights to int8 with one
scale per output channel (symmetric, 7 bits used) and quantizes activations per call to 8 bits
(fbgemm's dynamic int8 GEMM, CPU only); embeddings, norms, attention and the KV cache stay fp32. Its
cost in NLL is measured by ``pianogen eval --precision int8``.

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


# torch.compile cannot trace fbgemm's packed weights (an opaque blob in a uint8 tensor): a compiled graph
# calls pianogen::int8_linear with an integer handle instead, looked up here (dropped with the layer)
_PACKED: dict[int, tuple[torch.Tensor, ...]] = {}
_HANDLES = itertools.count()

# Weights use 7 bits (+-63 steps a channel) because activations use all 8 (0..255): AVX2's int8 product
# (vpmaddubsw) sums pairs of u8 x s8 products into int16 and saturates above 32767; 2 x 255 x 63 fits.
WEIGHT_STEPS = 63


def _int8_product(x: torch.Tensor, qweight: torch.Tensor, packed: torch.Tensor, col_offsets: torch.Tensor,
                  zero_bias: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] (fp32) @ (qweight * scale[:, None]).T + bias, on fbgemm's int8 kernel.

    The kernel takes one weight scale for the whole matrix; the rows are stored pre-divided by their own
    scale (so per-channel) and its output multiplied back by them. Called with tensors, not TorchScript's
    packed-params object: that object alone costs ~40 us a call in argument conversion (a C++ exception
    per call), more than the product itself at batch 1."""
    y = torch.fbgemm_linear_int8_weight_fp32_activation(x, qweight, packed, col_offsets, 1.0, 0, zero_bias)
    return y.mul_(scale) if bias is None else torch.addcmul(bias, y, scale)


@torch.library.custom_op("pianogen::int8_linear", mutates_args=())
def int8_linear(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """x [..., in] @ the int8 weights registered under ``handle`` -> [..., out_features] (fp32)."""
    return _int8_product(x, *_PACKED[handle])


@int8_linear.register_fake
def _(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], out_features)


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (symmetric, one scale per output channel) and activations
    quantized per call (asymmetric, 8 bits, one scale per call): fbgemm's dynamic int8 GEMM.

    The int8 weights, scales and bias are buffers; fbgemm's packed copy is rebuilt from them (on a copy
    too: two layers never share one packed blob, which owns its memory).
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float().cpu()
        scale = (weight.abs().amax(dim=1) / WEIGHT_STEPS).clamp_min(1e-12)
        qweight = (weight / scale[:, None]).round().clamp(-WEIGHT_STEPS, WEIGHT_STEPS).to(torch.int8)
        self.register_buffer("qweight", qweight)  # [out, in]
        self.register_buffer("scale", scale)  # [out]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().cpu())
        self._pack()

    def _pack(self) -> None:
        import warnings

        with warnings.catch_warnings():  # torch warns once that these fbgemm entry points are deprecated
            warnings.simplefilter("ignore")
            self.packed = torch.fbgemm_pack_quantized_matrix(self.qweight)
            self.col_offsets = self.qweight.sum(dim=1, dtype=torch.int32)  # fbgemm's column sums (zero point 0)
            self.zero_bias = torch.zeros(self.out_features)
            self.handle = next(_HANDLES)
            _PACKED[self.handle] = self._operands()
            weakref.finalize(self, _PACKED.pop, self.handle, None)
            self(torch.zeros(1, self.in_features))  # the one deprecation warning, silenced here

    def _operands(self) -> tuple:
        return self.qweight, self.packed, self.col_offsets, self.zero_bias, self.scale, self.bias

    def __getstate__(self) -> dict:  # a copy must not share (and later double-free) the packed blob
        state = super().__getstate__().copy()
        for name in ("packed", "col_offsets", "zero_bias", "handle"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return int8_linear(x.float(), self.handle, self.out_features)
        return _int8_product(x.float(), *self._operands())

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 weight [out, in] this layer multiplies by (what the int8 values and scales stand for)."""
        return self.qweight.float() * self.scale[:, None]

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
