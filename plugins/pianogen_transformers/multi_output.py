"""The PianoGen report's multi-output Transformer: K RVQ levels in, K levels out, per frame.

Each level has its own embedding table; the K embeddings of a frame are combined into one
vector (flattened and projected, as in the report, or summed), run through a causal
Transformer with learned positions, and K linear heads score the next frame's K codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pianogen.errors import PianogenError
from pianogen.interfaces import TokenModel
from pianogen_transformers.layers import Transformer, generate_steps, init_weights, transformer_flops_per_token

COMBINES = ("concat", "sum")


@dataclass
class MultiOutputConfig:
    n_levels: int = 4  # K, RVQ levels read and predicted (the host sets it from [codec] levels)
    vocab_size: int = 1024  # V, codes per level (the host sets it from the codec)
    block_size: int = 2048  # longest context in frames (the host sets it from [data] window)
    d_model: int = 512  # D, width of each level's embedding and of the residual stream
    n_layers: int = 6  # Transformer blocks
    n_heads: int = 8  # attention heads per block (d_model must divide evenly)
    d_ff: int = 2048  # hidden width of each block's feed-forward layer
    dropout: float = 0.1  # on embeddings, attention weights and residual branches (training only)
    bias: bool = True  # biases in Linear and LayerNorm layers
    combine: str = "concat"  # level embeddings -> one vector: "concat" (K·D, then a linear map to D) | "sum"

    def __post_init__(self) -> None:
        for name in ("n_levels", "vocab_size", "block_size", "d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                raise PianogenError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise PianogenError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.combine not in COMBINES:
            raise PianogenError(f"model.combine must be one of {', '.join(COMBINES)}, got '{self.combine}'")
        if self.d_model % self.n_heads:
            raise PianogenError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")


class MultiOutputTransformer(TokenModel):
    """Reads steps LongTensor[B, K, N] (ids < input_vocab) and scores the next step's K codes."""

    def __init__(self, config: MultiOutputConfig, input_vocab: int | None = None, max_steps: int | None = None):
        super().__init__()
        self.config = config
        self.n_levels, self.vocab_size, self.block_size = config.n_levels, config.vocab_size, config.block_size
        K, D = config.n_levels, config.d_model
        self.embeddings = nn.ModuleList(nn.Embedding(input_vocab or config.vocab_size, D) for _ in range(K))
        # one level needs no combining; "concat" flattens [K, D] per step and maps K·D -> D
        self.combine = nn.Linear(K * D, D, bias=config.bias) if config.combine == "concat" and K > 1 else None
        self.trunk = Transformer(D, config.n_layers, config.n_heads, config.d_ff, config.dropout, config.bias,
                                 max_len=max_steps or config.block_size)
        self.heads = nn.Linear(D, K * config.vocab_size, bias=False)  # the K heads D -> V, fused into one matmul
        self._folded: tuple[tuple, list[torch.Tensor]] | None = None  # see folded_embeddings
        init_weights(self, config.n_layers)

    def step_logits(self, steps: torch.Tensor, start: int | torch.Tensor | None = None,
                    last_only: bool = False) -> torch.Tensor:
        """steps LongTensor[B, K, N] -> logits FloatTensor[B, K, N, V] of the step after each one
        (``last_only``: of the last step only, [B, K, 1, V]; a prefill needs no more).

        ``start`` set = incremental decoding: the KV cache holds steps 0..start-1 of the context.
        """
        B, K, N = steps.shape
        folded = self.folded_embeddings() if N == 1 and isinstance(start, int) and not self.training else None
        if folded is not None:  # one decoded step: K table rows summed, no K·D -> D matmul
            x = sum(table[steps[:, k]] for k, table in enumerate(folded)) + self.combine.bias
        else:
            x = torch.stack([emb(steps[:, k]) for k, emb in enumerate(self.embeddings)], dim=2)  # [B, N, K, D]
            x = self.combine(x.flatten(2)) if self.combine is not None else x.sum(dim=2)  # [B, N, D]
        h = self.trunk(x, start)  # [B, N, D]
        if last_only:
            h, N = h[:, -1:], 1
        return self.heads(h).view(B, N, K, self.vocab_size).transpose(1, 2)  # [B, K, N, V]

    def folded_embeddings(self) -> list[torch.Tensor] | None:
        """The "concat" combine map folded into the level tables: row v of table k is
        combine.weight[:, k·D:(k+1)·D] @ embeddings[k].weight[v], so a decoded step sums K rows instead
        of reading the K·D x D matrix. Computed in fp32 once per weight version; None when there is no
        float combine map (sum, one level, or a quantized one) or biases are off."""
        combine = self.combine
        if type(combine) is not nn.Linear or combine.bias is None:
            return None
        tensors = [combine.weight, *(e.weight for e in self.embeddings)]
        try:  # weights made under inference_mode carry no version counter: no folding then
            key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        except RuntimeError:
            return None
        if self._folded is None or self._folded[0] != key:
            D = combine.weight.shape[0]
            with torch.no_grad():
                tables = [(e.weight.float() @ combine.weight[:, k * D:(k + 1) * D].float().T).to(e.weight.dtype)
                          for k, e in enumerate(self.embeddings)]
            self._folded = (key, tables)
        return self._folded[1]

    def check_codes(self, codes: torch.Tensor, window: bool = False) -> None:
        """codes must be [B, K, T]; a training/scoring ``window`` must also fit in block_size."""
        if codes.dim() != 3 or codes.shape[1] != self.n_levels:
            raise PianogenError(f"expected codes [B, {self.n_levels}, T], got {list(codes.shape)}")
        if window and codes.shape[2] > self.block_size:
            raise PianogenError(f"{codes.shape[2]} frames exceed block_size {self.block_size}")

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor[B, K, T] (T <= block_size) -> logits[B, K, T, V];
        logits[:, k, t] predict codes[:, k, t+1]."""
        self.check_codes(codes, window=True)
        return self.step_logits(codes)

    def generate(
        self,
        prompt: torch.Tensor,
        n_frames: int,
        sample: Callable[[torch.Tensor], torch.Tensor],
        use_cache: bool = True,
        on_frame: Callable[[int], None] | None = None,
        compile: bool | str = False,
    ) -> torch.Tensor:
        """prompt LongTensor[B, K, T0] -> the next n_frames frames LongTensor[B, K, n_frames], one step per frame.

        Past block_size frames the context slides to the most recent block_size // 2 frames
        (see ``layers.generate_steps``).
        """
        self.check_codes(prompt)
        return generate_steps(self, prompt, n_frames, sample, use_cache, on_step=on_frame, compile=compile)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per step, forward + backward. Embedding lookups do no matmuls, so their
        tables (levels and positions) are left out of N; the heads and combine map are counted."""
        lookups = sum(e.weight.numel() for e in self.embeddings) + self.trunk.wpe.weight.numel()
        c = self.config
        return transformer_flops_per_token(self.num_params() - lookups, c.n_layers, c.n_heads,
                                           c.d_model // c.n_heads, seq_len)

    def estimate_mfu(self, fwdbwd_per_iter: int, dt: float, peak_flops: float, seq_len: int | None = None) -> float:
        """Model FLOPs utilisation: ``fwdbwd_per_iter`` sequences of ``seq_len`` steps (default block_size)
        trained in ``dt`` seconds, as a fraction of ``peak_flops`` (e.g. 312e12 for an A100 in bf16)."""
        T = seq_len or self.block_size
        return self.flops_per_token(T) * T * fwdbwd_per_iter / dt / peak_flops
