"""All RVQ levels with MusicGen's delay pattern (Copet et al. 2023), the report's future work.

Level k is shifted right by k steps, so one Transformer step emits level 0 of frame t, level 1
of frame t-1, ..., level K-1 of frame t-K+1: when it predicts level k of a frame it has already
read levels < k of that same frame. As in audiocraft, the sequence opens with a special step S
(the pad id V on every level), so step s >= 1 holds level k of frame s - 1 - k and level 0 of
frame 0 is predicted from S. Positions before a level's first code hold the pad id V, an
input-only token (the heads still score V codes).

    frames  codes[k, t]              steps[k, s] = codes[k, s - 1 - k]
    k=0:  a0 a1 a2                   S  a0 a1 a2 .  .
    k=1:  b0 b1 b2                   S  P  b0 b1 b2 .
    k=2:  c0 c1 c2                   S  P  P  c0 c1 c2

Training and generation read the same patterns. A training window of T frames is the S step and
its delayed frames; generation keeps at most block_size steps of context and, when it slides,
re-reads the kept steps as the window of frames they start with (``as_window``: S first, pads
before each level's first frame), so position 0 never holds real codes. The slide keeps at least
K + 1 steps, so every level predicted next is a frame after the window's first, as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pianogen.errors import PianogenError
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


def with_special_step(steps: torch.Tensor, pad: int) -> torch.Tensor:
    """delayed steps [B, K, N] -> [B, K, N + 1] opened by the special step (``pad`` on every level)."""
    return torch.cat([steps.new_full((*steps.shape[:2], 1), pad), steps], dim=2)


def as_window(steps: torch.Tensor, pad: int) -> torch.Tensor:
    """Any run of steps [B, K, N] of the pattern -> the steps a training window starting at its level-0
    frame shows: S at position 0, ``pad`` for level k at positions 1..k (frames before the window)."""
    window = steps.clone()
    window[:, :, 0] = pad
    for k in range(1, steps.shape[1]):
        window[:, k, 1:k + 1] = pad
    return window


class DelayTransformer(MultiOutputTransformer):
    """codes LongTensor[B, K, T] -> logits FloatTensor[B, K, T, V], delayed inside, un-delayed out."""

    def __init__(self, config: DelayConfig) -> None:
        # inputs add the pad id; a block of T frames spans the special step and T + K - 1 delayed steps
        super().__init__(config, input_vocab=config.vocab_size + 1, max_steps=config.block_size + config.n_levels)
        self.pad = config.vocab_size
        # generation reads at most block_size steps, the positions whose every level training scores
        self.context_steps = config.block_size
        self.keep_steps = max(config.block_size // 2, config.n_levels + 1)

    def step_logits(self, steps: torch.Tensor, start: int | torch.Tensor | None = None,
                    last_only: bool = False) -> torch.Tensor:
        """As the multi-output model's, except that a whole context (``start`` None or 0) is first read
        as a training window (``as_window``); one step appended to the KV cache is read as it is."""
        if start is None or (isinstance(start, int) and start == 0):
            steps = as_window(steps, self.pad)
        return super().step_logits(steps, start, last_only)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """logits[:, k, t] predict codes[:, k, t+1]. Made at step t + k + 1, they have read
        codes[:, j, t'] for t' <= t + k - j: level k up to frame t, every lower level j < k up to
        frame t + k - j >= t + 1 (the same frame's lower levels, and more), higher levels less."""
        self.check_codes(codes, window=True)
        out = super().step_logits(with_special_step(delay(codes, self.pad), self.pad))  # [B, K, T + K, V]
        # the output at step s predicts step s + 1, whose level k is codes[:, k, s - k]
        return undelay(out[:, :, 1:])

    def generate(
        self,
        prompt: torch.Tensor,
        n_frames: int,
        sample: Callable[[torch.Tensor], torch.Tensor],
        use_cache: bool = True,
        on_frame: Callable[[int], None] | None = None,
        compile: bool | str = False,
    ) -> torch.Tensor:
        """prompt LongTensor[B, K, T0] -> the next n_frames frames LongTensor[B, K, n_frames].

        One step per delayed step (n_frames + K - 1 steps, each a call to ``sample``); draws for
        codes the prompt already fixes (its last frames' upper levels) or for pads are replaced by
        those values. ``on_frame(i)`` fires once frame i has all its levels. The context slides over
        steps: past block_size it keeps the most recent max(block_size // 2, K + 1), read as a window.
        """
        self.check_codes(prompt)
        if self.keep_steps >= self.context_steps:
            raise PianogenError(f"the delay model needs block_size > K + 1 = {self.n_levels + 1} to generate "
                                f"(a slide keeps K + 1 steps), got {self.block_size}")
        B, K, T0 = prompt.shape
        unknown = prompt.new_full((B, K, n_frames), -1)
        # the whole step sequence with -1 where a code is still to be drawn
        steps = with_special_step(delay(torch.cat([prompt, unknown], dim=2), self.pad), self.pad)
        on_step = None if on_frame is None else (lambda i: on_frame(i - K + 1) if i >= K - 1 else None)
        new_steps = generate_steps(self, steps[:, :, :T0 + 1], n_frames + K - 1, sample, use_cache,
                                   forced=steps[:, :, T0 + 1:], on_step=on_step, compile=compile)
        return undelay(new_steps)  # [B, K, n_frames]
