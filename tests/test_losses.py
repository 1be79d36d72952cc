"""Losses: per-level NLL with masks; the mel loss's linear fit, cache, gradients and decoder mode."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from pianogen_losses.mel import latent_of
from torch import nn

import pianogen
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec, LossContext


def test_nll_per_level_and_mask():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 3, 5, 7), torch.randint(0, 7, (2, 3, 5))
    loss, metrics = pianogen.get_loss("nll")(logits, targets)
    per_level = [F.cross_entropy(logits[:, k].reshape(-1, 7), targets[:, k].reshape(-1)) for k in range(3)]
    torch.testing.assert_close(loss, torch.stack(per_level).mean())
    assert set(metrics) == {"nll", "nll_l1", "nll_l2", "nll_l3"}
    assert metrics["nll_l2"] == pytest.approx(per_level[1].item(), rel=1e-5)

    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    garbage = logits.clone()
    garbage[1, :, 3:] = 1e4 * torch.randn(3, 2, 7)  # masked frames must not count
    masked, _ = pianogen.get_loss("nll")(garbage, targets, mask)
    kept = [F.cross_entropy(logits[:, k].permute(0, 2, 1), targets[:, k], reduction="none")[mask].mean()
            for k in range(3)]
    torch.testing.assert_close(masked, torch.stack(kept).mean())


class TinyCodec(Codec):
    """A small real codec: random frozen codebooks, a strided-conv encoder with greedy residual VQ,
    and a nonlinear decoder (ConvTranspose -> ELU -> Conv) whose output a linear map can only approximate."""

    def __init__(self, hop: int = 32, dim: int = 8, levels: int = 3, codebook_size: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.sample_rate, self.hop_length, self.n_levels, self.codebook_size = 8000, hop, levels, codebook_size
        self.frame_rate = self.sample_rate / hop
        scale = 1 + torch.arange(levels)[:, None, None]  # later levels are finer, as in a real RVQ
        self.register_buffer("books", torch.randn(levels, codebook_size, dim) / scale)
        self.encoder = nn.Conv1d(1, dim, hop, stride=hop)
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, 8, 3 * hop, stride=hop), nn.ELU(), nn.Conv1d(8, 1, 9))
        self.requires_grad_(False)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        residual, codes = self.encoder(wav).transpose(1, 2), []  # [B, T, D]
        for book in self.books:
            code = torch.cdist(residual, book[None]).argmin(-1)
            codes.append(code)
            residual = residual - book[code]
        return torch.stack(codes, dim=1)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        T = latent.shape[2]
        return self.decoder(latent)[:, :, 4:4 + T * self.hop_length]  # drop the conv edges

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(latent_of(codes, self.books[: codes.shape[1]]))

    def codebooks(self) -> torch.Tensor:
        return self.books

    def identity(self) -> dict:
        return {"name": "tiny", "seed": 0}  # identity() is abstract: caches and checkpoints key on it


def random_codes(codec: Codec, B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, codec.codebook_size, (B, codec.n_levels, T), generator=torch.Generator().manual_seed(seed))


def context(codec: Codec, tmp_path, levels: int = 2) -> LossContext:
    return LossContext(codec=codec, levels=levels, cache_dir=tmp_path,
                       train_codes=lambda: (random_codes(codec, 4, 64, seed) for seed in range(100)))


def codecs() -> list:
    """The tiny codec above, plus a small random-init SoundStream when that plugin is registered."""
    params = [pytest.param(TinyCodec, id="tiny")]
    from pianogen.registry import registered
    if "soundstream" in registered("codec"):
        params.append(pytest.param(lambda: pianogen.get_codec("soundstream", channels=4, dim=16, strides=[2, 4, 4],
                                                              n_levels=3, codebook_size=32).eval(),
                                   id="soundstream"))
    return params


@pytest.mark.parametrize("make_codec", codecs())
def test_linear_reconstruction_approximates_the_decoder(make_codec, tmp_path):
    codec = make_codec()
    loss = pianogen.get_loss("mel", context_frames=4, lookahead_frames=1, fit_batches=3, fit_frames=64)
    loss.prepare(context(codec, tmp_path))
    assert loss.fit_error < 0.25  # a zero predictor scores 1.0
    held_out = random_codes(codec, 2, 40, seed=1000)[:, :2]
    decoded = codec.decode(held_out)
    predicted = loss.linear(latent_of(held_out, codec.codebooks()[:2]))
    relative = (predicted - decoded).norm() / decoded.norm()
    assert relative < 0.25
    assert relative < 1.5 * loss.fit_error + 0.05  # the ConvTranspose form applies the fitted map faithfully


def test_linear_fit_is_cached_by_levels(tmp_path):
    codec = TinyCodec()
    first = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    first.prepare(context(codec, tmp_path, levels=2))
    assert len(list(tmp_path.glob("mel_linear_l2_*.safetensors"))) == 1

    def no_data():
        raise AssertionError("a cached fit must not read training data")

    again = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    again.prepare(LossContext(codec=codec, levels=2, cache_dir=tmp_path, train_codes=no_data))
    torch.testing.assert_close(again.linear.weight, first.linear.weight)
    assert again.fit_error == pytest.approx(first.fit_error)
    pianogen.get_loss("mel", fit_batches=2, fit_frames=32).prepare(context(codec, tmp_path, levels=3))
    assert len(list(tmp_path.glob("mel_linear_l3_*.safetensors"))) == 1  # other levels, another fit


@pytest.mark.parametrize("reconstruction", ["linear", "decoder"])
def test_mel_loss_gradient_reaches_logits(reconstruction, tmp_path):
    codec = TinyCodec()
    loss_fn = pianogen.get_loss("mel", reconstruction=reconstruction, crop_frames=16, fit_batches=2, fit_frames=32)
    loss_fn.prepare(context(codec, tmp_path))
    targets = random_codes(codec, 2, 40, seed=5)[:, :2]
    logits = torch.randn(2, 2, 40, codec.codebook_size, requires_grad=True)
    loss, metrics = loss_fn(logits, targets)
    loss.backward()
    assert math.isfinite(metrics["mel"]) and loss.item() > 0
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()

    confident = 30.0 * F.one_hot(targets, codec.codebook_size).float()  # expected latent == target latent
    assert loss_fn(confident, targets)[0] < 0.05 * loss.item()


def test_masked_frames_do_not_count(tmp_path):
    codec = TinyCodec()
    loss_fn = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    loss_fn.prepare(context(codec, tmp_path))
    targets = random_codes(codec, 1, 40, seed=6)[:, :2]
    logits = torch.randn(1, 2, 40, codec.codebook_size)
    nothing = torch.zeros(1, 40, dtype=torch.bool)
    assert loss_fn(logits, targets, nothing)[0] < 1e-6


def test_mel_config_errors(tmp_path):
    with pytest.raises(PianogenError, match="reconstruction"):
        pianogen.get_loss("mel", reconstruction="vocoder")

    class NoLatentCodec(TinyCodec):
        decode_latent = None

    with pytest.raises(PianogenError, match="decode_latent"):
        pianogen.get_loss("mel", reconstruction="decoder").prepare(context(NoLatentCodec(), tmp_path))


def test_linear_fit_error_on_held_out_windows_is_logged_and_warned(tmp_path, capsys, monkeypatch):
    mel_module = importlib.import_module("pianogen_losses.mel")  # the package re-exports a function "mel"

    codec = TinyCodec()
    ctx = context(codec, tmp_path)
    ctx.validation_codes = lambda: (random_codes(codec, 4, 64, seed) for seed in range(500, 510))
    loss_fn = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    loss_fn.prepare(ctx)
    # measured on windows the fit never saw: a real error, larger than zero, and no warning for a good fit
    assert 0 < loss_fn.validation_error < mel_module.FIT_ERROR_WARNING
    held_out = random_codes(codec, 4, 64, seed=500)[:, :2, :32]
    direct = (loss_fn.linear(latent_of(held_out, codec.codebooks()[:2])) - codec.decode(held_out)).norm() \
        / codec.decode(held_out).norm()
    assert float(direct) == pytest.approx(loss_fn.validation_error, rel=0.3)  # one of its two batches
    err = capsys.readouterr().err
    assert f"{loss_fn.validation_error:.3f} on held-out windows" in err and "warning" not in err
    _, metrics = loss_fn(torch.randn(1, 2, 40, codec.codebook_size), random_codes(codec, 1, 40, 6)[:, :2])
    assert metrics["mel_fit_error"] == loss_fn.validation_error  # logged with every loss value
    # a threshold the fit misses: the warning names the remedy (the cached fit is reused, error and all)
    monkeypatch.setattr(mel_module, "FIT_ERROR_WARNING", 0.0)
    again = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    again.prepare(LossContext(codec=codec, levels=2, cache_dir=tmp_path, train_codes=lambda: iter(())))
    assert again.validation_error == loss_fn.validation_error
    assert "warning: the mel loss's linear stand-in misses" in capsys.readouterr().err


@pytest.mark.parametrize("option", [{"fit_batches": 3}, {"fit_frames": 48}, {"ridge": 1e-2}])
def test_linear_fit_cache_is_keyed_on_every_fit_option(tmp_path, option):
    codec = TinyCodec()
    base = pianogen.get_loss("mel", fit_batches=2, fit_frames=32)
    base.prepare(context(codec, tmp_path))
    other = pianogen.get_loss("mel", **{"fit_batches": 2, "fit_frames": 32, **option})
    other.prepare(context(codec, tmp_path))
    assert len(list(tmp_path.glob("mel_linear_l2_*.safetensors"))) == 2  # a new fit, not the stale one
    assert not torch.equal(other.linear.weight, base.linear.weight)
