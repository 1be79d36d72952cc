"""Drawing codes from logits: temperature, top-k and top-p (nucleus) sampling.

``make_sampler(...)`` returns the ``sample(logits[B, K, V]) -> codes[B, K]`` callable that
``TokenModel.generate`` expects; a seed makes a whole continuation reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pianogen.errors import PianogenError

Sampler = Callable[[torch.Tensor], torch.Tensor]


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise PianogenError(f"temperature must be >= 0 (0 = argmax), got {temperature}")
    if top_k < 0:
        raise PianogenError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise PianogenError(f"top_p must be in [0, 1] (0 = off), got {top_p}")


def draw(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``weights`` [N, V] (>= 0, not all zero), with probability proportional to
    its weight -> LongTensor[N, 1]: inverse-CDF sampling, one uniform per row (a third of
    torch.multinomial's time for 4 x 250 weights, which draws one exponential per weight)."""
    cdf = weights.cumsum(dim=-1)
    u = torch.rand(weights.shape[0], 1, generator=generator, device=weights.device, dtype=cdf.dtype) * cdf[:, -1:]
    # the first index whose cumulative weight exceeds u: zero weights are never picked
    return torch.searchsorted(cdf, u, right=True).clamp_max(weights.shape[-1] - 1)


def sample_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits FloatTensor[..., V] -> codes LongTensor[...].

    temperature 0 is argmax. top_p > 0 keeps the smallest set of codes whose probability
    reaches top_p and wins over top_k when both are set (as in audiocraft); top_k > 0 keeps
    the k most likely codes. 0 switches either off.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    flat = logits.reshape(-1, logits.shape[-1]).float()  # [N, V]
    if top_p > 0:
        probs = torch.softmax(flat / temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a code once the mass strictly before it already reaches top_p (the first code always stays)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        codes = order.gather(-1, draw(sorted_probs.masked_fill(drop, 0.0), generator))
    elif top_k > 0:  # the k largest logits first, in any order: the softmax then spans k codes, not V
        top_logits, top_codes = flat.topk(min(top_k, flat.shape[-1]), dim=-1, sorted=False)
        codes = top_codes.gather(-1, draw(torch.softmax(top_logits / temperature, dim=-1), generator))
    else:
        codes = draw(torch.softmax(flat / temperature, dim=-1), generator)
    return codes.view(logits.shape[:-1])


def make_sampler(
    temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0, seed: int | None = None
) -> Sampler:
    """A ``sample(logits[..., V]) -> codes[...]`` closure with its own generator (seeded when ``seed`` is set)."""
    check_sampling(temperature, top_k, top_p)
    generators: dict[torch.device, torch.Generator] = {}

    def sample(logits: torch.Tensor) -> torch.Tensor:
        generator = None
        if seed is not None:
            if logits.device not in generators:  # a generator lives on one device: make it where the logits are
                generators[logits.device] = torch.Generator(device=logits.device).manual_seed(seed)
            generator = generators[logits.device]
        return sample_logits(logits, temperature, top_k, top_p, generator)

    return sample
