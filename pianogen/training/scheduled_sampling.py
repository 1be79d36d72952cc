"""Parallel scheduled sampling (Duckworth et al. 2019, "Parallel Scheduled Sampling"): train the token model on
inputs where a share of the codes are its own one-step samples, the targets staying the data.

Why: teacher forcing shows the model only true contexts, and a free-running model soon reads its own slips. The
piano model, after a lone recorded note, sampled a code that decodes as a click in the note's quiet tail, read
the click as a player's onset and broke into loud chords, where the recording only decays (RESULTS.md, "Own
codes and ring-outs": after the notes it trained on it expected 2.7 loud frames in 8 s given the true tail, 99
given its own). Shown its own plausible-but-wrong codes with the data's continuation as the target, it learns
that one slip does not start the music: retrained so (with ring-outs), 2.3 and 1.5.

One extra forward pass without gradients per micro-batch (dropout off, as at generation): each position's
logits ``model(codes)[:, k, t]`` are a draw for ``codes[:, k, t + 1]`` given the true past, the model's own kind
of slip. The first frame, which nothing predicts, is never replaced.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def with_own_codes(model: torch.nn.Module, codes: torch.Tensor, rate: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """codes LongTensor[B, K, T] -> LongTensor[B, K, T]: each code after the first frame replaced, with
    probability ``rate``, by the model's sample for it given the true codes before it (temperature 1)."""
    if rate <= 0 or codes.shape[-1] < 2:
        return codes
    was_training = model.training
    model.train(False)
    try:
        logits = model(codes)[:, :, :-1].float()  # [B, K, T - 1, V]: the model's guess of codes[:, :, 1:]
    finally:
        model.train(was_training)
    B, K, T1, V = logits.shape
    guess = torch.multinomial(logits.reshape(-1, V).softmax(dim=-1), 1, generator=generator).view(B, K, T1)
    swap = torch.rand(guess.shape, generator=generator, device=guess.device) < rate
    inputs = codes.clone()
    inputs[:, :, 1:] = torch.where(swap, guess.to(codes.dtype), codes[:, :, 1:])
    return inputs
