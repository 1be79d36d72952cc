"""Drawing codes from logits: temperature, top-k and top-p (nucleus) sampling, and the prompt prior.

``make_sampler(...)`` returns the ``sample(logits[B, K, V]) -> codes[B, K]`` callable that
``TokenModel.generate`` expects; a seed makes a whole continuation reproducible.

The prompt prior (``prompt_prior`` > 0) is shallow fusion with the prompt's own code frequencies: the codes a
level may change to are weighed by ``log p_model + w * log q_prompt`` before temperature and top-k, where
``q_prompt`` is how often each code occurs at that level in the prompt (plus PRIOR_PSEUDOCOUNT, so no code is
ruled out). It
exists because the piano model is local: ten frames of context predict as well as 300, so nothing in it
carries the prompt's key, and its continuations wander off it (pitch-class correlation with the prompt 0.20 on
validation prompts, where the true continuation scores 0.47). A product, not a mixture (a mixture with a fixed
histogram jumps to a prompt code on any frame: 12.8 notes/s against 6.8). And the model alone decides whether a
level's code changes: the previous frame's code keeps the model's probability, and only the codes it may change to
are weighed by the prior. Weighing the repeat too made the prompt's chords stick: level-1 codes changed 12 times
a second against the model's 21 and the true 35, and Mel images showed one chord held for 8 s (RESULTS.md, "The
prompt prior").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pianogen.errors import PianogenError

Sampler = Callable[[torch.Tensor], torch.Tensor]

# Counts added to every code before the prompt's frequencies are normalised: a code the prompt never used stays
# possible (its log-prior is finite). 0.1 kept more distinct pitches than add-one (6.1 against 5.5 of 7.6 true,
# at weight 1 on 12 validation prompts) with as much of the key (pitch-class correlation 0.41 against 0.37).
PRIOR_PSEUDOCOUNT = 0.1


def check_sampling(temperature: float, top_k: int, top_p: float, prompt_prior: float = 0.0) -> None:
    if not prompt_prior >= 0:  # nan too
        raise PianogenError(f"prompt_prior must be >= 0 (0 = off), got {prompt_prior}")
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


def prompt_log_prior(prompt: torch.Tensor, vocab: int) -> torch.Tensor:
    """prompt LongTensor[B, K, T] (codes < vocab) -> FloatTensor[B, K, vocab]: the log of each level's code
    frequencies in the prompt, PRIOR_PSEUDOCOUNT added to every code's count."""
    B, K, T = prompt.shape
    counts = torch.full((B, K, vocab), PRIOR_PSEUDOCOUNT, device=prompt.device)
    counts.scatter_add_(2, prompt, torch.ones(prompt.shape, device=prompt.device))
    return (counts / counts.sum(dim=-1, keepdim=True)).log()


def with_prior(log_probs: torch.Tensor, prior: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """log_probs [B, K, V] (the model's), prior [B or 1, K, V] (weighted log-prior), previous LongTensor[B, K] or
    None -> log-weights [B, K, V] for ``sample_logits`` (which normalises them): the previous code (where it is a
    code, < V) keeps the model's probability; the rest of the mass goes to the other codes in proportion to
    model x prior. No previous: model x prior."""
    fused = log_probs + prior
    if previous is None:
        return fused
    V = log_probs.shape[-1]
    valid = (previous >= 0) & (previous < V)  # pads and special steps are no code to stay on
    stay_at = previous.clamp(0, V - 1).unsqueeze(-1)  # [B, K, 1]
    stay = log_probs.gather(-1, stay_at)  # the model's log P(the same code again)
    change = fused.scatter(-1, stay_at, float("-inf")).log_softmax(dim=-1)  # which code, given a change
    change = change + torch.log1p(-stay.exp().clamp(max=1 - 1e-6))  # x the model's P(a change)
    kept = change.scatter(-1, stay_at, stay)
    return torch.where(valid.unsqueeze(-1), kept, fused)


def make_sampler(
    temperature: float | torch.Tensor = 1.0, top_k: int = 0, top_p: float = 0.0, seed: int | None = None,
    prompt: torch.Tensor | None = None, prompt_prior: float = 0.0,
) -> Sampler:
    """A ``sample(logits[B, K, V]) -> codes[B, K]`` closure with its own generator (seeded when ``seed`` is set).
    ``temperature``: one for every row, or FloatTensor[B], one per row (each prompt's own: prompt_end.py).
    With ``prompt`` LongTensor[B or 1, K, T] and ``prompt_prior`` w > 0, the codes level k may change to get
    ``w * prompt_log_prior(prompt)[:, k]`` added to their log-probabilities first (``with_prior``; the previous code,
    which ``generate_steps`` passes since ``reads_previous`` is set, keeps the model's; the module docstring says
    why)."""
    per_row = None
    if isinstance(temperature, torch.Tensor):  # rows cooled apart: divided here, then sampled at temperature 1
        per_row = temperature.float().reshape(-1, 1, 1)
        if not bool(torch.isfinite(per_row).all()) or float(per_row.min()) < 0:
            raise PianogenError(f"temperatures must be finite and >= 0, got {temperature.tolist()}")
        # 0 (argmax) kept as a temperature so small that only the largest logit survives the softmax
        per_row, temperature = per_row.clamp_min(1e-6), 1.0
    check_sampling(temperature, top_k, top_p, prompt_prior)
    generators: dict[torch.device, torch.Generator] = {}
    priors: dict[torch.device, torch.Tensor] = {}
    if prompt_prior > 0 and prompt is None:
        raise PianogenError("prompt_prior needs the prompt's codes")

    def sample(logits: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        if prompt_prior > 0:
            if logits.device not in priors:  # the vocabulary is the logits' last dimension: made on first use
                priors[logits.device] = prompt_prior * prompt_log_prior(prompt.to(logits.device), logits.shape[-1])
            logits = with_prior(logits.float().log_softmax(dim=-1), priors[logits.device], previous)
        if per_row is not None:
            logits = logits.float() / per_row.to(logits.device)
        generator = None
        if seed is not None:
            if logits.device not in generators:  # a generator lives on one device: make it where the logits are
                generators[logits.device] = torch.Generator(device=logits.device).manual_seed(seed)
            generator = generators[logits.device]
        return sample_logits(logits, temperature, top_k, top_p, generator)

    sample.reads_previous = prompt_prior > 0  # type: ignore[attr-defined]  # generate_steps passes the step before
    return sample
