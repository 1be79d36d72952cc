"""What every token model shares: pre-norm Transformer blocks (nanoGPT), gpt-fast's static KV
cache, the step-by-step generation loop with a sliding context, and the FLOPs count.

A *step* is one position of the sequence the Transformer reads: a frame for `baseline` and
`multi_output`, a delayed step for `delay`. Shapes: B batch, K levels, N steps, D model width,
H heads, Dh = D / H head width, L cache length.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pianogen.errors import PianogenError


def _cpu_has_bf16() -> bool:
    try:  # AVX-512 BF16 or AMX: oneDNN's own test
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


CPU_HAS_BF16 = _cpu_has_bf16()


class KVCache(nn.Module):
    """Static cache (gpt-fast): k/v buffers [B, H, L, Dh] preallocated once and written in place."""

    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, zeroed: bool = True) -> None:
        super().__init__()
        shape = (batch, n_heads, max_len, head_dim)
        # compiled decoding reads the whole buffer under a mask (garbage could be NaN: 0 * NaN = NaN);
        # eager decoding reads only the written prefix, so it may skip the zero fill
        make = torch.zeros if zeroed else torch.empty
        self.register_buffer("k", make(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", make(shape, dtype=dtype, device=device), persistent=False)

    def update(self, start: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, n, Dh] at positions start..start+n-1.

        An int ``start`` returns the filled prefix [B, H, start+n, Dh]: eager decoding attends over
        it only. A tensor ``start`` (compiled decoding) returns the whole buffers [B, H, L, Dh], whose
        shapes never change, so one compiled graph (or CUDA graph) serves every step.
        """
        if isinstance(start, torch.Tensor):
            input_pos = start + torch.arange(k.shape[2], device=k.device)
            self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
            self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
            return self.k, self.v
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.proj_dropout = nn.Dropout(dropout)
        self.dropout = dropout
        self.cache: KVCache | None = None

    def forward(self, x: torch.Tensor, start: int | torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]; ``start`` set = the cache holds steps 0..start-1 and x continues them
        (an int: eager decoding; a 0-d tensor: static shapes for compiled decoding)."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, N, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # [B,H,N,Dh]
        if start is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        else:
            if self.cache is None:
                raise RuntimeError("setup_caches() before decoding with a start position")
            k, v = self.cache.update(start, k, v)  # [B, H, start+N or L, Dh]
            mask = None  # a single new step sees every key of the filled prefix
            if N > 1 or isinstance(start, torch.Tensor):  # query i sits at start+i and sees keys 0..start+i
                mask = (torch.arange(k.shape[2], device=x.device)[None, :]
                        <= start + torch.arange(N, device=x.device)[:, None])  # [N, start+N or L]
            if k.dtype != q.dtype:  # a bf16 model's fp32 cache (see Transformer.setup_caches)
                y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask).to(q.dtype)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = self.proj(y.transpose(1, 2).contiguous().view(B, N, D))
        return self.proj_dropout(y) if self.training else y  # a decoded step skips 13 no-op Dropout calls

    def decode_one(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """One eager decoded step: x [B, D] at position ``start`` -> [B, D]; the cache holds 0..start-1.

        The same arithmetic as forward(x[:, None], start) (bit-identical), in fewer operator calls:
        no mask, no transposes, no contiguous copy. At batch 1 a step is bound by per-call overhead.
        """
        B, D = x.shape
        H = self.n_heads
        qkv = self.qkv(x).view(B, 3, H, 1, D // H)  # q, k, v, each [B, H, 1, Dh]
        k, v = self.cache.update(start, qkv[:, 1], qkv[:, 2])  # [B, H, start+1, Dh]
        q = qkv[:, 0]
        if k.dtype != q.dtype:  # a bf16 model's fp32 cache (see Transformer.setup_caches)
            y = F.scaled_dot_product_attention(q.to(k.dtype), k, v).to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v)  # [B, H, 1, Dh]
        return self.proj(y.reshape(B, D))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, bias)
        self.ln_2 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff, bias=bias), nn.GELU(), nn.Linear(d_ff, d_model, bias=bias), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, start: int | torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(x + self.attn(self.ln_1(x), start))

    def decode_one(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """One eager decoded step, x [B, D] -> [B, D] (see CausalSelfAttention.decode_one)."""
        return self.feed_forward(x + self.attn.decode_one(self.ln_1(x), start))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + mlp(ln_2(x)), any leading shape."""
        if self.training:
            return x + self.mlp(self.ln_2(x))
        fc, act, out, _ = self.mlp  # no Dropout call in eval
        return x + out(act(fc(self.ln_2(x))))


class Transformer(nn.Module):
    """Learned positions, a stack of causal blocks, a final LayerNorm: [B, N, D] -> [B, N, D]."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, d_ff: int, dropout: float, bias: bool,
                 max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.d_model, self.n_heads = d_model, n_heads
        self.wpe = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, bias) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, bias=bias)
        self.compiled_decode: Callable[[torch.Tensor, int], torch.Tensor] | None = None  # see generate_steps

    def forward(self, x: torch.Tensor, start: int | torch.Tensor | None = None) -> torch.Tensor:
        N = x.shape[1]
        offset = 0 if start is None else start
        if not isinstance(offset, torch.Tensor) and offset + N > self.max_len:  # tensors: generate_steps bounds them
            raise PianogenError(f"sequence of {offset + N} steps exceeds the model's {self.max_len} positions")
        if N == 1 and isinstance(start, int) and not self.training:  # one eager decoded step: fewer operator calls
            x = x[:, 0] + self.wpe.weight[start]  # [B, D]
            return self.ln_f((self.compiled_decode or self.decode_blocks)(x, start))[:, None]
        if isinstance(offset, torch.Tensor):
            x = x + self.wpe(offset + torch.arange(N, device=x.device))
        else:  # a slice of the table: no index tensor to build at every decoded step
            x = x + self.wpe.weight[offset:offset + N]
        if self.training:
            x = self.drop(x)
        for block in self.blocks:
            x = block(x, start)
        return self.ln_f(x)

    def decode_blocks(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """One eager decoded step through every block: x [B, D] at position ``start`` -> [B, D]."""
        for block in self.blocks:
            x = block.decode_one(x, start)
        return x

    def setup_caches(self, batch: int, length: int | None = None, zeroed: bool = True) -> None:
        """Caches of ``length`` steps (default and at most max_len). ``zeroed`` for static-shape decoding,
        which reads the whole buffer under a mask; eager decoding reads only what it wrote."""
        weight = self.wpe.weight
        dtype = weight.dtype
        if dtype == torch.bfloat16 and weight.device.type == "cpu" and not CPU_HAS_BF16:
            # CPUs without bf16 units run bf16 attention ~6x slower than fp32 (AVX2): the cache holds the
            # bf16 keys and values exactly in fp32, so no step converts the whole cache
            dtype = torch.float32
        for block in self.blocks:
            block.attn.cache = KVCache(batch, self.n_heads, min(length or self.max_len, self.max_len),
                                       self.d_model // self.n_heads, dtype, weight.device, zeroed=zeroed)

    def clear_caches(self) -> None:
        for block in self.blocks:
            block.attn.cache = None
        self.compiled_decode = None


def init_weights(module: nn.Module, n_layers: int) -> None:
    """nanoGPT's init: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * n_layers) (GPT-2)."""
    for name, p in module.named_parameters():
        if p.dim() < 2:
            if name.endswith("bias"):
                nn.init.zeros_(p)
            continue
        std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
        nn.init.normal_(p, mean=0.0, std=std)


def transformer_flops_per_token(n_params: int, n_layers: int, n_heads: int, head_dim: int, seq_len: int) -> float:
    """Training FLOPs per token, forward + backward (PaLM appendix B, as in nanoGPT): 6N + 12·L·H·Q·T."""
    return 6 * n_params + 12 * n_layers * n_heads * head_dim * seq_len


class StepModel(Protocol):
    """What the generation loop needs from a model."""

    trunk: Transformer
    training: bool

    def step_logits(self, steps: torch.Tensor, start: int | torch.Tensor | None = None,
                    last_only: bool = False) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> nn.Module: ...


@torch.no_grad()
def generate_steps(
    model: StepModel,
    prompt: torch.Tensor,
    n_steps: int,
    sample: Callable[[torch.Tensor], torch.Tensor],
    use_cache: bool = True,
    forced: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
    compile: bool | str = False,
) -> torch.Tensor:
    """Extend ``prompt`` steps LongTensor[B, K, N0] by ``n_steps`` -> LongTensor[B, K, n_steps].

    Each step draws ``sample(logits[B, K, V]) -> [B, K]``; where ``forced[B, K, i] >= 0`` that value
    replaces the draw of step i (delay: prompt codes and pads that are already known). A sampler with
    ``reads_previous = True`` is called ``sample(logits, previous)``, ``previous`` LongTensor[B, K] the step before
    (each level's previous frame, in a delay pattern too; pads and specials are >= V).

    Sliding rule: the context is the last ``trunk.max_len`` steps at most. When a new step would
    overflow it, the context restarts from the most recent ``max_len // 2`` steps (positions
    renumbered from 0, the cache re-prefilled once), then grows again. With and without the cache
    the contexts are identical step for step, so both give the same tokens.

    ``compile`` (with the cache) runs each one-step decode through ``torch.compile``. ``"static"``, what
    True means off the CPU: static shapes, as CUDA graphs on CUDA (gpt-fast, mode "reduce-overhead"):
    the whole cache buffer under a position mask, the position a 0-d tensor. ``"dynamic"``, what True
    means on the CPU, where a static graph would read all max_len keys at every step (slower than
    eager): the trunk's one-step path compiled with dynamic shapes over the filled cache prefix, so
    inductor fuses the small operators between the Linear layers, which dominate a batch-1 step. The
    prefill stays eager. Neither graph depends on the prompt's or the run's length (the caches span
    max_len steps; the step fed in is a contiguous copy), so a second call reuses the first's
    compilation instead of compiling again.
    """
    B, K, N0 = prompt.shape
    if N0 < 1:
        raise PianogenError("the prompt must hold at least one frame")
    # a model may read fewer steps than its positions (delay: the positions training scores on all levels)
    max_ctx = getattr(model, "context_steps", model.trunk.max_len)
    keep = getattr(model, "keep_steps", max_ctx // 2)
    reads_previous = getattr(sample, "reads_previous", False)
    seq = torch.cat([prompt, prompt.new_zeros(B, K, n_steps)], dim=2)  # every step so far [B, K, N0 + n_steps]
    end, start = N0, max(0, N0 - max_ctx)  # context = seq[:, :, start:end]
    was_training = model.training
    model.train(False)  # dropout off however the caller left the model
    if compile not in (False, True, "static", "dynamic"):
        raise PianogenError(f"compile must be a bool, 'static' or 'dynamic', not {compile!r}")
    compiled = bool(compile) and use_cache
    static = compiled and (compile == "static" or (compile is True and prompt.device.type != "cpu"))
    if use_cache:  # a compiled graph's shapes must not depend on the run's length; eager needs no more than it
        model.trunk.setup_caches(B, None if compiled else N0 + n_steps, zeroed=static)
    decode = model.step_logits
    if static:
        mode = "reduce-overhead" if prompt.device.type == "cuda" else "default"
        decode = torch.compile(model.step_logits, mode=mode, fullgraph=True, dynamic=False)
    elif compiled:
        model.trunk.compiled_decode = torch.compile(model.trunk.decode_blocks, dynamic=True)
    attention = contextlib.nullcontext()
    if static and prompt.device.type == "cuda" and next(model.trunk.parameters()).dtype == torch.float32:
        # fp32 has only the memory-efficient kernel, which gives one query a tile per head (8 blocks on 132
        # SMs) that walks every key: 233 us a layer over the CUDA-graph cache on an H100, 1.4 ms of a
        # frame's 1.6. Inside a graph the plain matmul-softmax-matmul, which spreads the keys over the GPU,
        # costs no launches (1 868 frames/s against 484-546); eager, its extra launches cost more than it saves.
        attention = sdpa_kernel([SDPBackend.MATH])
    elif prompt.device.type == "cuda" and not static:
        # Eager decoding attends over a new key length at every step. cuDNN attention, which torch may pick
        # for bf16, builds a plan per shape: 62 ms per new length on an H100 against 0.3 ms for the
        # memory-efficient kernel (a first 1000-frame bf16 run at 23 frames/s), so eager decoding leaves it out.
        attention = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
    try:
        with attention:
            def context_logits() -> torch.Tensor:  # the whole context, recomputed (also the cache's prefill)
                return model.step_logits(seq[:, :, start:end], 0 if use_cache else None, last_only=True)[:, :, -1]

            logits = context_logits()  # [B, K, V]
            for i in range(n_steps):
                step = sample(logits, seq[:, :, end - 1]) if reads_previous else sample(logits)  # [B, K]
                if forced is not None and i < forced.shape[2]:
                    step = torch.where(forced[:, :, i] >= 0, forced[:, :, i], step)
                seq[:, :, end] = step
                end += 1
                if on_step is not None:
                    on_step(i)
                if i == n_steps - 1:
                    break
                if end - start > max_ctx:
                    start = end - keep
                    logits = context_logits()
                elif use_cache:
                    position, last = end - 1 - start, seq[:, :, end - 1:end]
                    if static:  # a 0-d tensor position over the whole cache buffer, and a contiguous step:
                        # seq's strides grow with n_steps, and the graph's input layout must not
                        position, last = torch.tensor(position, device=seq.device), last.contiguous()
                    logits = decode(last, position, last_only=True)[:, :, -1]
                else:
                    logits = context_logits()
    finally:
        model.trunk.clear_caches()
        model.train(was_training)
    return seq[:, :, N0:]
