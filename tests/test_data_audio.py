"""Audio I/O: mono mix-down, resampling, atomic 16-bit writes, unreadable files named in the error."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pianogen.data.audio import load_audio, load_or_skip, save_audio
from pianogen.errors import PianogenError


def test_mono_mixdown_and_resample(tmp_path):
    sr, f = 44100, 1000.0
    t = np.arange(sr) / sr
    left, right = 0.5 * np.sin(2 * np.pi * f * t), 0.1 * np.ones_like(t)
    sf.write(str(tmp_path / "s.flac"), np.stack([left, right], 1), sr)
    wav = load_audio(tmp_path / "s.flac", 16000)
    assert wav.dtype == torch.float32 and wav.shape == (1, 16000)
    spec = np.abs(np.fft.rfft(wav[0].numpy()))
    assert np.argmax(spec[1:]) + 1 == 1000  # the tone survives at 1 kHz (1 Hz bins)
    assert wav.mean().item() == pytest.approx(0.05, abs=2e-3)  # channels averaged
    same = load_audio(tmp_path / "s.flac", sr)
    assert same.shape == (1, sr) and torch.allclose(same[0], torch.tensor((left + right) / 2, dtype=torch.float32),
                                                    atol=1e-4)


def test_save_audio_roundtrip_atomic(tmp_path):
    x = torch.linspace(-1.5, 1.5, 1000)
    save_audio(tmp_path / "o.wav", x, 8000)
    save_audio(tmp_path / "st.wav", torch.stack([x, -x]) * 0.5, 8000)
    info = sf.info(str(tmp_path / "o.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (8000, 1, "PCM_16", 1000)
    y, _ = sf.read(str(tmp_path / "o.wav"))
    assert y.max() == pytest.approx(1.0, abs=1e-4) and y.min() == -1.0  # clipped, not wrapped
    assert sf.info(str(tmp_path / "st.wav")).channels == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav", "st.wav"]  # no temp files left


def bad_files(tmp_path):
    good = tmp_path / "good.wav"
    save_audio(good, np.random.default_rng(0).uniform(-0.5, 0.5, 8000), 8000)
    data = good.read_bytes()
    files = {"truncated.wav": data[: len(data) // 2], "header-only.wav": data[:30],
             "text.wav": b"this is not audio" * 20, "empty.flac": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 1)), 8000)
    return good, [tmp_path / n for n in [*files, "zero.wav"]]


def test_unreadable_files_raise_naming_the_file(tmp_path):
    good, bad = bad_files(tmp_path)
    assert load_audio(good, 8000).shape == (1, 8000)
    for path in bad:
        with pytest.raises(PianogenError, match=path.name):
            load_audio(path, 8000)
    with pytest.raises(PianogenError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 8000)


def test_load_or_skip_warns_or_raises(tmp_path):
    good, bad = bad_files(tmp_path)
    with pytest.warns(UserWarning, match="truncated.wav"):
        assert load_or_skip(bad[0], 8000) is None
    with pytest.raises(PianogenError, match="text.wav"):
        load_or_skip(bad[2], 8000, strict=True)
    assert load_or_skip(good, 8000, strict=True).shape == (1, 8000)
