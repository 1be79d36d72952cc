"""Sampling modes: argmax, temperature, top-k, top-p (wins over top-k), seeded reproducibility, the prompt prior."""

from __future__ import annotations

import pytest
import torch

from pianogen.errors import PianogenError
from pianogen.generation.sampling import make_sampler, sample_logits

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
LOGITS = PROBS.log().expand(20000, 4)  # many draws from one distribution


def frequencies(codes: torch.Tensor) -> torch.Tensor:
    return torch.bincount(codes.flatten(), minlength=4).float() / codes.numel()


def draw(**options) -> torch.Tensor:
    return frequencies(sample_logits(LOGITS, generator=torch.Generator().manual_seed(0), **options))


def test_temperature_zero_is_argmax_and_keeps_shape():
    logits = torch.randn(2, 3, 4, 10)
    codes = sample_logits(logits, temperature=0.0, top_k=3, top_p=0.5)
    assert codes.shape == (2, 3, 4) and torch.equal(codes, logits.argmax(-1))


def test_plain_sampling_follows_the_distribution():
    torch.testing.assert_close(draw(), PROBS, atol=0.015, rtol=0)


def test_temperature_sharpens_and_flattens():
    assert draw(temperature=0.5)[0] > 0.65  # 0.5² / Σp² ≈ 0.71
    assert draw(temperature=4.0)[0] < 0.35


def test_top_k_keeps_the_k_most_likely_renormalised():
    torch.testing.assert_close(draw(top_k=2), torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.015, rtol=0)


def test_top_p_keeps_the_nucleus_and_wins_over_top_k():
    nucleus = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95  # 0.5 + 0.3 < 0.9 <= 0.5 + 0.3 + 0.15
    torch.testing.assert_close(draw(top_p=0.9), nucleus, atol=0.015, rtol=0)
    torch.testing.assert_close(draw(top_p=0.9, top_k=1), nucleus, atol=0.015, rtol=0)
    assert draw(top_p=0.1)[0] == 1.0  # the most likely code always stays


def test_seeded_sampler_is_reproducible_and_seeds_differ():
    logits = torch.randn(4, 8, 64)
    a, b, c = (make_sampler(1.0, top_k=20, seed=s) for s in (5, 5, 6))
    first = a(logits)
    assert torch.equal(first, b(logits)) and not torch.equal(first, c(logits))
    assert not torch.equal(a(logits), first)  # the generator advances between calls


def test_bad_settings_are_user_errors():
    for options in (dict(temperature=-1.0), dict(top_k=-2), dict(top_p=1.5), dict(prompt_prior=-1.0),
                    dict(prompt_prior=float("nan")), dict(prompt_prior=1.0)):  # the last: no prompt to read
        with pytest.raises(PianogenError):
            make_sampler(**options)


def test_draw_never_picks_a_zero_weight_and_follows_the_others():
    from pianogen.generation.sampling import draw

    weights = torch.tensor([[0.0, 3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0]]).repeat(5000, 1)
    picks = draw(weights, torch.Generator().manual_seed(1)).view(-1, 2)
    assert picks[:, 1].eq(4).all()  # a row with one non-zero weight always picks it
    first = torch.bincount(picks[:, 0], minlength=5).float() / picks.shape[0]
    assert first[[0, 2, 4]].eq(0).all() and abs(first[1] - 0.75) < 0.02


def prior_draws(model_probs: torch.Tensor, prompt: list[list[int]], weight: float) -> torch.Tensor:
    """Frequencies of 20000 draws per level from ``model_probs`` [K, V] under the prompt prior of ``prompt``
    (one list of codes per level) -> [K, V]."""
    sample = make_sampler(1.0, seed=0, prompt=torch.tensor([prompt]), prompt_prior=weight)
    codes = sample(model_probs.log().expand(20000, -1, -1))  # [20000, K]
    return torch.stack([torch.bincount(codes[:, k], minlength=model_probs.shape[-1]).float() / codes.shape[0]
                        for k in range(codes.shape[1])])


def test_the_prompt_prior_weights_each_level_by_its_own_prompt_codes():
    uniform = torch.full((2, 4), 0.25)
    prompt = [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [3] * 10]  # level 0: codes 0 and 1; level 1: only code 3
    off = prior_draws(uniform, prompt, 0.0)
    torch.testing.assert_close(off, uniform, atol=0.015, rtol=0)  # weight 0: the model alone
    on = prior_draws(uniform, prompt, 1.0)
    # a flat model and weight 1: the prompt's frequencies, each code's count plus 0.1 (none is ruled out)
    torch.testing.assert_close(on, torch.tensor([[3.1, 7.1, 0.1, 0.1], [0.1, 0.1, 0.1, 10.1]]) / 10.4,
                               atol=0.015, rtol=0)
    assert (on[:, :] > 0).sum() > 4  # codes the prompt never used are still drawn now and then


def test_the_prompt_prior_is_a_product_the_model_still_ranks_what_the_prompt_used():
    model = torch.tensor([[0.7, 0.1, 0.1, 0.1]])  # the model prefers code 0
    prompt = [[0] * 5 + [1] * 5]  # the prompt used 0 and 1 equally: the model's preference must survive
    drawn = prior_draws(model, prompt, 1.0)[0]
    assert drawn[0] > 0.8 and drawn[1] > 0.08 and drawn[2:].sum() < 0.01
    strong = prior_draws(torch.full((1, 4), 0.25), [[2] * 10], 5.0)[0]  # a heavy weight: almost only the prompt
    assert strong[2] > 0.99


def test_with_the_previous_code_the_model_alone_decides_whether_it_changes():
    model = torch.tensor([0.6, 0.2, 0.1, 0.1]).log().expand(20000, 1, 4)  # code 0, the previous one, likeliest
    sample = make_sampler(1.0, seed=0, prompt=torch.tensor([[[3] * 10]]), prompt_prior=1.0)
    assert sample.reads_previous  # generate_steps then passes each level's previous code
    stayed = frequencies(sample(model, torch.zeros(20000, 1, dtype=torch.long)))
    # P(same code) stays the model's 0.6; the other 0.4 goes by model x prior, almost all to the prompt's code 3
    torch.testing.assert_close(stayed, torch.tensor([0.6, 0.4 * 0.02, 0.4 * 0.01, 0.4 * 1.01]) / torch.tensor(
        [1.0, 1.04, 1.04, 1.04]), atol=0.015, rtol=0)
    fused = frequencies(sample(model))  # no previous (a model's first step): the plain product
    assert fused[3] > 0.88 and fused[0] < 0.08
    pad = frequencies(sample(model, torch.full((20000, 1), 4)))  # a pad or special step is no code to stay on
    torch.testing.assert_close(pad, fused, atol=0.015, rtol=0)
