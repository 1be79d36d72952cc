"""Parallel scheduled sampling: which codes the model's own samples replace, and the trainer using them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import pianogen
from pianogen.errors import PianogenError
from pianogen.training.scheduled_sampling import with_own_codes
from pianogen.training.train import train
from tests.conftest import tiny_recipe


class Certain(torch.nn.Module):
    """Next-frame logits that put (almost) all mass on ``code``; dropout so that train/eval mode shows."""

    def __init__(self, code: int, vocab: int = 16) -> None:
        super().__init__()
        self.code, self.vocab, self.modes = code, vocab, []
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, codes):
        self.modes.append(self.training)
        logits = torch.full((*codes.shape, self.vocab), -30.0)
        logits[..., self.code] = 30.0
        return logits


def test_a_share_of_the_codes_after_the_first_frame_become_the_models_own():
    codes = torch.randint(0, 8, (4, 3, 500))  # codes 0-7; the model always says 12
    model = Certain(12).train()
    torch.manual_seed(0)
    inputs = with_own_codes(model, codes, 0.25)
    swapped = inputs != codes
    assert torch.equal(inputs[:, :, 0], codes[:, :, 0])  # nothing predicts the first frame
    assert set(inputs[swapped].tolist()) == {12}  # what replaces a code is the model's sample
    assert 0.22 < swapped[:, :, 1:].float().mean() < 0.28
    assert model.modes == [False] and model.training  # sampled as at generation, then left training
    assert with_own_codes(model, codes, 0.0) is codes


def test_the_same_draws_from_the_same_generator():
    codes = torch.randint(0, 8, (2, 2, 64))
    draw = lambda seed: with_own_codes(Certain(3), codes, 0.5, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


def test_training_with_own_codes_changes_the_run_and_resumes_exactly(tmp_path, tiny_codec_path, tiny_corpus):
    def recipe(name, rate):
        return pianogen.load_recipe(tiny_recipe(tmp_path / name, tiny_codec_path, tiny_corpus,
                                                train={"save_every": 3, "log_every": 1, "scheduled_sampling": rate}))

    def losses(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == "train"]

    plain, straight = train(recipe("plain", 0.0), progress=False), train(recipe("a", 0.3), progress=False)
    assert losses(plain)[0][1] != losses(straight)[0][1]  # the first step already reads other inputs
    resumable = recipe("b", 0.3)

    def kill(step):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(resumable, progress=False, on_step=kill)
    resumed = train(resumable, resume=True, progress=False)
    a = load_file(straight / "checkpoints/last/model.safetensors")
    b = load_file(resumed / "checkpoints/last/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(resumed) == losses(straight)


def test_a_rate_outside_0_1_is_one_clear_error(tmp_path, tiny_codec_path, tiny_corpus):
    with pytest.raises(PianogenError, match="scheduled_sampling"):
        pianogen.load_recipe(tiny_recipe(tmp_path / "x", tiny_codec_path, tiny_corpus,
                                         train={"scheduled_sampling": 1.5}))
