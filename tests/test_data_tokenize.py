"""Tokenization: stitched length, chunked == whole, cache reuse, resume after a kill, unreadable files."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch
from pianogen_data import synth

from pianogen.data.audio import save_audio
from pianogen.data.tokenize import TokenCache, cache_dir, encode_stitched, tokenize
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec
from pianogen.recipe import DataConfig


class EnvelopeCodec(Codec):
    """A tiny real codec: the log-RMS of each frame's 3-frame neighbourhood (receptive field +-1
    frame), quantized residually into K levels of V bins; decodes to a tone following the envelope."""

    sample_rate, hop_length, n_levels, codebook_size = 16000, 320, 4, 16
    frame_rate = sample_rate / hop_length

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.calls, self.fail_after = 0, fail_after

    def identity(self):
        return {"name": "envelope", "hop": self.hop_length, "levels": self.n_levels, "bins": self.codebook_size}

    def _widths(self) -> torch.Tensor:
        return self.codebook_size ** -torch.arange(self.n_levels, dtype=torch.float64)  # bin width per level

    def encode(self, wav):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        hop, frames = self.hop_length, math.ceil(wav.shape[-1] / self.hop_length)
        x = torch.nn.functional.pad(wav.double()[:, 0], (hop, (frames + 1) * hop - wav.shape[-1]))
        rms = x.unfold(-1, 3 * hop, hop).pow(2).mean(-1).sqrt()  # [B, frames]
        u = ((rms + 1e-4).log10() + 4).clamp(0, 3.999) / 4  # in [0, 1)
        codes, offset = [], torch.zeros_like(u)
        for width in self._widths():
            q = ((u - offset) / width).floor().clamp(0, self.codebook_size - 1)
            codes.append(q.long())
            offset = offset + q * width
        return torch.stack(codes, 1)

    def decode(self, codes):
        u = (codes.double() * self._widths()[: codes.shape[1], None]).sum(1)
        amp = 10 ** (4 * u - 4) * math.sqrt(2)
        t = torch.arange(codes.shape[-1] * self.hop_length) / self.sample_rate
        return (amp.repeat_interleave(self.hop_length, -1) * torch.sin(2 * math.pi * 440 * t)).float()[:, None]

    def codebooks(self):
        return (torch.arange(self.codebook_size)[None, :, None] * self._widths()[:, None, None]).float()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synth.write_corpus(tmp_path_factory.mktemp("c") / "m0.5-s0", 0.5, seed=0, progress=False)


@pytest.fixture
def home(tmp_path, monkeypatch, corpus):
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "m0.5-s0").symlink_to(corpus)  # the corpus the synthetic source expects
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path))
    return tmp_path


DATA = DataConfig(source="synthetic", options={"minutes": 0.5, "seed": 0}, chunk_seconds=2.0,
                  chunk_overlap_seconds=0.2)


def test_codec_roundtrip_is_real():
    codec = EnvelopeCodec()
    wav = 0.3 * torch.sin(torch.arange(16000) / 16000 * 2 * math.pi * 440)[None, None]
    codes = codec.encode(wav)
    assert codes.shape == (1, 4, 50) and codes.max() < 16
    back = codec.decode(codes)
    assert back.shape == (1, 1, 16000)
    rms = lambda k: codec.decode(codes[:, :k])[0, 0, 4000:12000].pow(2).mean().sqrt().item()  # noqa: E731
    assert rms(4) == pytest.approx(0.3 / math.sqrt(2), rel=0.02)
    # every residual level refines the envelope: the error shrinks with each level added
    errors = [abs(rms(k) - 0.3 / math.sqrt(2)) for k in (1, 2, 3, 4)]
    assert all(finer < coarser for coarser, finer in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.0, 4.0, 5.013, 9.99])
def test_chunked_equals_whole(seconds):
    """The codec sees +-1 frame; the 0.2 s overlap (10 frames) covers it, so stitching is exact."""
    n = round(seconds * 16000)
    rng = np.random.default_rng(n)
    env = np.repeat(rng.uniform(0.001, 0.8, n // 800 + 1), 800)[:n]
    wav = torch.tensor(env * rng.standard_normal(n), dtype=torch.float32)[None]
    codec = EnvelopeCodec()
    whole = codec.encode(wav[None])[0]
    stitched = encode_stitched(codec, wav, chunk_seconds=2.0, overlap_seconds=0.2, batch_size=3)
    assert stitched.shape == (4, math.ceil(n / 320))
    assert torch.equal(stitched, whole)


def test_tokenize_lengths_manifest_and_reuse(home):
    codec = EnvelopeCodec()
    cache = tokenize(DATA, codec, "envelope", progress=False)
    assert cache.dir == cache_dir(DATA, codec, "envelope") and cache.dir.parent == home / "tokens"
    manifest = json.loads((cache.dir / "manifest.json").read_text())
    assert manifest["codec"]["name"] == "envelope" and len(manifest["codec"]["config_hash"]) == 16
    assert (manifest["frame_rate"], manifest["levels"], manifest["sample_rate"]) == (50.0, 4, 16000)
    assert manifest["data"]["source"] == "synthetic" and manifest["data"]["chunk_seconds"] == 2.0
    assert {p["split"] for p in cache.pieces()} == {"train", "validation", "test"}
    for p in cache.pieces():
        frames_44k = sf.info(str(home / "synthetic" / "m0.5-s0" / p["audio_filename"])).frames
        duration = Fraction(frames_44k, 44100)
        assert p["frames"] == math.ceil(duration * 50)  # exact: no frame lost or duplicated
        codes = cache.codes(p)
        assert isinstance(codes, np.memmap) and codes.dtype == np.uint16 and codes.shape == (4, p["frames"])
    assert cache.frame_rate == 50.0 and cache.levels == 4
    assert len(cache.pieces("test")) == 1 and cache.pieces("test")[0]["split"] == "test"
    assert codec.calls == 3  # one batch of <= 8 two-second chunks per ~10 s piece

    again = EnvelopeCodec()
    cache2 = tokenize(DATA, again, "envelope", progress=False)
    assert again.calls == 0 and cache2.dir == cache.dir and cache2.manifest == cache.manifest

    model_only = DataConfig(**{**DATA.__dict__, "window": 64, "window_overlap": 0.25, "num_workers": 0})
    assert cache_dir(model_only, codec, "envelope") == cache.dir  # model-side keys share the cache
    rechunked = DataConfig(**{**DATA.__dict__, "chunk_seconds": 3.0})
    assert cache_dir(rechunked, codec, "envelope") != cache.dir
    assert cache_dir(DATA, codec, "other-name") != cache.dir


def test_resume_after_kill(home):
    killed = EnvelopeCodec(fail_after=4)  # 2 chunks a batch: piece 1 needs 3-4 calls, so this dies in piece 2
    with pytest.raises(KeyboardInterrupt):
        tokenize(DATA, killed, "envelope", batch_size=2, progress=False)
    cache = cache_dir(DATA, killed, "envelope")
    assert len(list(cache.glob("*.npy"))) == 1 and not (cache / "manifest.json").exists()
    assert not list(cache.glob(".*tmp*"))  # atomic writes leave no partial file
    resumed = EnvelopeCodec()
    done = tokenize(DATA, resumed, "envelope", batch_size=2, progress=False)
    calls = [math.ceil(math.ceil(p["frames"] / 100) / 2) for p in done.pieces()]  # 100-frame chunks
    assert len(calls) == 3 and 3 <= calls[0] <= 4
    assert resumed.calls == sum(calls[1:])  # only the unfinished pieces are encoded
    third = EnvelopeCodec()
    tokenize(DATA, third, "envelope", progress=False)
    assert third.calls == 0


def test_unreadable_files_skipped_or_strict(tmp_path, monkeypatch):
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path / "home"))
    root = tmp_path / "audio"
    for i in range(3):
        save_audio(root / f"ok{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(8000), 8000)
    (root / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    (root / "sub").mkdir()
    (root / "sub" / "empty.ogg").write_bytes(b"")
    data = DataConfig(source="folder", options={"root": str(root)}, chunk_seconds=0.5, chunk_overlap_seconds=0.1)
    with pytest.warns(UserWarning) as caught:
        cache = tokenize(data, EnvelopeCodec(), "envelope", progress=False)
    messages = " ".join(str(r.message) for r in caught)
    assert "broken.wav" in messages and "empty.ogg" in messages
    assert sorted(p["audio_filename"] for p in cache.pieces()) == ["ok0.wav", "ok1.wav", "ok2.wav"]
    assert sorted(cache.manifest["skipped"]) == ["broken.wav", "sub/empty.ogg"]
    assert all(p["frames"] == 50 for p in cache.pieces())  # 1 s at 8 kHz, resampled to 16 kHz: 50 frames
    strict = DataConfig(**{**data.__dict__, "strict": True})
    with pytest.raises(PianogenError, match="broken.wav"):
        tokenize(strict, EnvelopeCodec(), "envelope", progress=False)


def test_token_cache_missing(tmp_path):
    with pytest.raises(PianogenError, match="no token cache"):
        TokenCache(tmp_path)
