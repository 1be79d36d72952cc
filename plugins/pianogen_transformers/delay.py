"""All RVQ levels with MusicGen's delay pattern (Copet et al. 2023), the report's future work.

Level k is shifted right by k steps, so one Transformer step emits level 0 of frame t, level 1
of frame t-1, ..., level K-1 of frame t-K+1: when it predicts level k of a frame it has already
read levels < k of that same frame. Positions before a level's first code hold the pad id V,
an input-only token (the heads still score V codes).

    frames  codes[k, t]                     delayed steps  steps[k, s] = codes[k, s - k]
    k=0:  a0 a1 a2                          a0 a1 a2 .  .
    k=1:  b0 b1 b2                          P  b0 b1 b2 .
    k=2:  c0 c1 c2                          P  P  c0 c1 c2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pianogen_transformers.layers import generate_steps
from pianogen_transformers.multi_output import MultiOutputConfig, MultiOutputTransformer


@dataclass
class DelayConfig(MultiOutputConfig):
    n_levels: int = 16  # K, all of SoundStream's levels (the host sets it from [codec] levels)
    combine: str = "sum"  # level embeddings summed per step, as in MusicGen ("concat" also works)


def delay(codes: torch.Tensor, pad: int) -> torch.Tensor:
    """codes [B, K, T, ...] -> delayed steps [B, K, T + K - 1, ...], level k shifted right by k, ``pad`` elsewhere."""
    B, K, T = codes.shape[:3]
    steps = codes.new_full((B, K, T + K - 1, *codes.shape[3:]), pad)
    for k in range(K):
        steps[:, k, k:k + T] = codes[:, k]
    return steps


def undelay(steps: torch.Tensor) -> torch.Tensor:
    """delayed steps [B, K, T + K - 1, ...] -> frames [B, K, T, ...]; the inverse of ``delay``."""
    K = steps.shape[1]
    T = steps.shape[2] - K + 1
    return torch.stack([steps[:, k, k:k + T] for k in range(K)], dim=1)


class DelayTransformer(MultiOutputTransformer):
    """codes LongTensor[B, K, T] -> logits FloatTensor[B, K, T, V], delayed inside, un-delayed out."""

    def __init__(self, config: DelayConfig) -> None:
        # inputs add the pad id; a block of T frames spans T + K - 1 delayed steps
        super().__init__(config, input_vocab=config.vocab_size + 1,
                         max_steps=config.block_size + config.n_levels - 1)
        self.pad = config.vocab_size

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """logits[:, k, t] predict codes[:, k, t+1]. Made at delayed step t + k, they have read
        codes[:, j, t'] for t' <= t + k - j: level k up to frame t, every lower level j < k up to
        frame t + k - j >= t + 1 (the same frame's lower levels, and more), higher levels less."""
        self.check_codes(codes, window=True)
        # the output at delayed step s predicts step s+1, whose level k is codes[:, k, s+1-k]
        return undelay(self.step_logits(delay(codes, self.pad)))

    def generate(
        self,
        prompt: torch.Tensor,
        n_frames: int,
        sample: Callable[[torch.Tensor], torch.Tensor],
        use_cache: bool = True,
        on_frame: Callable[[int], None] | None = None,
        compile: bool = False,
    ) -> torch.Tensor:
        """prompt LongTensor[B, K, T0] -> the next n_frames frames LongTensor[B, K, n_frames].

        One step per delayed step (n_frames + K - 1 steps, each a call to ``sample``); draws for
        codes the prompt already fixes (its last frames' upper levels) or for pads are replaced by
        those values. ``on_frame(i)`` fires once frame i has all its levels. The context slides over
        delayed steps: past block_size + K - 1 it keeps the most recent half.
        """
        self.check_codes(prompt)
        B, K, T0 = prompt.shape
        unknown = prompt.new_full((B, K, n_frames), -1)
        # the whole delayed sequence with -1 where a code is still to be drawn
        steps = delay(torch.cat([prompt, unknown], dim=2), self.pad)  # [B, K, T0 + n_frames + K - 1]
        on_step = None if on_frame is None else (lambda i: on_frame(i - K + 1) if i >= K - 1 else None)
        new_steps = generate_steps(self, steps[:, :, :T0], n_frames + K - 1, sample, use_cache,
                                   forced=steps[:, :, T0:], on_step=on_step, compile=compile)
        return undelay(new_steps)  # [B, K, n_frames]
