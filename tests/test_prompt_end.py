"""How the prompt ends (generation/prompt_end.py): onsets and decay read off its audio, the temperature and the
ring-out fade that follow, and both threaded through one-shot, streamed and in-memory generation alike."""

from __future__ import annotations

import math

import pytest
import torch

from pianogen.generation.prompt_end import (
    BUSY_ONSETS_PER_SECOND,
    DEEPEST_FADE_DB,
    level_slope,
    onset_times,
    quietness,
    recent_onset_rate,
    scaled_temperature,
)
from pianogen.generation.ring_out import BANDS, RingOut, band_decay_rates, band_of_bins, ring_out_whole

SR = 16000


def decaying_tone(seconds: float, db_per_s: float, sample_rate: int = SR, hz: float = 440.0) -> torch.Tensor:
    """A lone note's tail: partials 1-4 of ``hz`` dying away at ``db_per_s``, struck before the clip begins."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    partials = sum(torch.sin(2 * math.pi * hz * h * t) / h for h in range(1, 5))
    return 0.3 * partials * torch.pow(10.0, db_per_s * t / 20)


def struck_every(seconds: float, period: float) -> torch.Tensor:
    """Notes struck every ``period`` seconds, each on another pitch, each decaying."""
    t = torch.arange(round(seconds * SR)) / SR
    wav = torch.zeros_like(t)
    for k in range(int(seconds / period) + 1):
        start = k * period
        wav += (t >= start) * torch.sin(2 * math.pi * (220 + 30 * k) * t) * torch.exp(-(t - start).clamp(min=0) * 3)
    return 0.2 * wav


def test_struck_notes_are_onsets_and_a_dying_note_has_none():
    onsets = onset_times(struck_every(5.0, 0.5), SR)
    # every strike after the first (which has no "before") within 30 ms, and nothing else
    assert len(onsets) == 9 and torch.allclose(onsets, torch.arange(1, 10) * 0.5, atol=0.03)
    assert recent_onset_rate(struck_every(5.0, 0.5), SR) == pytest.approx(2.0, abs=0.34)
    # a note's tail: its partials only fall, and the clip's end (reflect-padded by the STFT) is no strike either
    assert len(onset_times(decaying_tone(5.0, -3.0), SR)) == 0
    assert recent_onset_rate(decaying_tone(5.0, -3.0), SR) == 0.0
    # at another sample rate the same (resampled to the analysis rate first)
    assert recent_onset_rate(decaying_tone(5.0, -3.0, 44100), 44100) == 0.0
    assert recent_onset_rate(torch.zeros(SR // 4), SR) is None  # too short to tell


def test_the_level_slope_and_each_bands_decay_are_read_off_the_prompts_end():
    assert level_slope(decaying_tone(5.0, -6.0), SR) == pytest.approx(-6.0, abs=0.05)
    assert level_slope(decaying_tone(5.0, 2.0), SR) == pytest.approx(2.0, abs=0.05)
    # partial h of 440 Hz dies at 2h dB a second: the band that holds it says so
    t = torch.arange(5 * SR) / SR
    tone = sum(torch.sin(2 * math.pi * 440 * h * t) / h * torch.pow(10.0, -2 * h * t / 20) for h in range(1, 5))
    rates = band_decay_rates(tone, SR)
    band = lambda hz: int(band_of_bins(SR)[round(hz * 1024 / SR)])  # noqa: E731  (64 ms at 16 kHz: 1024 bins)
    for h in range(1, 5):
        assert rates[band(440 * h)] == pytest.approx(-2.0 * h, abs=0.3), h
    assert len(rates) == BANDS and max(rates) <= 0.0
    assert band_decay_rates(decaying_tone(5.0, 3.0), SR) == [0.0] * BANDS  # a swell is no decay
    assert min(band_decay_rates(decaying_tone(1.0, -60.0), SR)) == -40.0  # cut off mid-note: the bound
    assert band_decay_rates(torch.zeros(SR // 4), SR) is None


def test_the_fade_follows_each_band_and_how_quiet_the_prompts_end_is_alike_in_any_chunks():
    assert quietness(0.0) == 1.0 and quietness(None) == 0.0 and quietness(2 * BUSY_ONSETS_PER_SECOND) == 0.0
    assert scaled_temperature(1.0, 0.5, 0.0) == 0.5 and scaled_temperature(1.0, 0.5, 5.0) == 1.0
    assert scaled_temperature(0.8, 0.5, 0.5 * BUSY_ONSETS_PER_SECOND) == pytest.approx(0.6)
    assert scaled_temperature(1.0, 0.5, None) == 1.0  # unknown: the run's temperature
    noise = torch.randn(3, 4 * SR + 77, generator=torch.Generator().manual_seed(0))
    rates = [[-4.0] * BANDS, [-4.0] * (BANDS // 2) + [-12.0] * (BANDS // 2), [-4.0] * BANDS]
    faded = ring_out_whole(noise, SR, rates, [0.0, 0.0, 3.0])
    assert faded.shape == noise.shape and torch.allclose(faded[2], noise[2], atol=1e-6)  # after busy playing: none

    def db(wav: torch.Tensor, at: float, low_hz: float = 0.0, high_hz: float = SR / 2) -> float:
        """The power of 0.2 s of ``wav`` around ``at`` seconds between two frequencies (5 Hz bins), in dB."""
        power = torch.fft.rfft(wav[round((at - 0.1) * SR):round((at + 0.1) * SR)]).abs().pow(2)
        return 10 * math.log10(float(power[round(low_hz / 5):round(high_hz / 5)].sum()))

    assert db(faded[0], 2.0) - db(noise[0], 2.0) == pytest.approx(-8.0, abs=0.3)
    assert db(faded[0], 0.5) - db(noise[0], 0.5) == pytest.approx(-2.0, abs=0.3)
    upper = float(torch.logspace(math.log10(30.0), math.log10(SR / 2), BANDS + 1)[BANDS // 2 + 1])  # well inside
    assert db(faded[1], 2.0, upper) - db(noise[1], 2.0, upper) == pytest.approx(-24, abs=1)
    assert db(faded[1], 2.0, 50, 200) - db(noise[1], 2.0, 50, 200) == pytest.approx(-8.0, abs=1)
    deepest = ring_out_whole(noise[:1, :SR], SR, [[-400.0] * BANDS], [0.0])  # faded to the floor, no further
    assert db(deepest[0], 0.8) - db(noise[0, :SR], 0.8) == pytest.approx(DEEPEST_FADE_DB, abs=1)
    # chunks of any size come out as the whole does, 64 ms later at most
    fader, parts, at = RingOut(SR, rates, [0.0, 0.0, 3.0]), [], 0
    for size in (800, 13, 5000, 1, 20000, 10**6):
        parts.append(fader(noise[:, at:at + size]))
        assert min(at + size, noise.shape[1]) - sum(p.shape[1] for p in parts) <= 1024
        at += size
    parts.append(fader.flush())
    assert torch.equal(torch.cat(parts, dim=1), faded)
    assert ring_out_whole(noise[:, :100], SR, rates, [0.0, 0.0, 0.0]).shape == (3, 100)  # shorter than a frame


def test_per_row_temperatures_sample_each_row_at_its_own():
    from pianogen.generation.sampling import make_sampler

    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(2, 5000, 4).contiguous()
    codes = make_sampler(torch.tensor([0.0, 1.0]), seed=0)(logits)
    assert (codes[0] == 0).all()  # temperature 0: argmax
    assert 0.45 < (codes[1] == 0).float().mean() < 0.55  # temperature 1: the distribution itself
    # one temperature per row equal to a shared one draws exactly what the shared one draws
    assert torch.equal(make_sampler(torch.tensor([0.7, 0.7]), seed=1)(logits), make_sampler(0.7, seed=1)(logits))


def test_a_ringing_prompts_continuation_is_cooled_and_faded_alike_in_memory_and_streamed(trained_run, tmp_path):
    import json

    import numpy as np

    import pianogen
    from pianogen.generation.generate import GenerationRequest, generate
    from pianogen.generation.stream import stream_generate

    prompt = decaying_tone(2.0, -6.0)
    options = dict(seconds=1.0, prompt_seconds=1.5, run=trained_run, seed=3, top_k=20, quiet_temperature_scale=0.5)
    held, sr = pianogen.continue_audio(prompt, SR, ring_out=False, **options)
    faded, _ = pianogen.continue_audio(prompt, SR, ring_out=True, **options)
    assert level_slope(faded[0], sr) < level_slope(held[0], sr) - 1.5
    # cooled: another temperature than the run's draws other codes
    warm, _ = pianogen.continue_audio(prompt, SR, ring_out=False, **{**options, "quiet_temperature_scale": 1.0})
    assert not torch.equal(warm, held)

    import soundfile as sf

    sf.write(tmp_path / "tone.wav", prompt.numpy(), SR, subtype="FLOAT")  # the same samples as in memory
    chunks = []
    request = GenerationRequest(prompt=str(tmp_path / "tone.wav"), seconds=1.0, out=tmp_path / "s", prompt_seconds=1.5,
                                top_k=20, seed=3, quiet_temperature_scale=0.5, ring_out=True)
    report = stream_generate(trained_run, request, progress=False, on_chunk=lambda audio, rate: chunks.append(audio))
    streamed = np.concatenate(chunks, axis=-1)[0]
    np.testing.assert_allclose(streamed, faded[0].clamp(-1, 1).numpy(), atol=1e-5)
    settings = json.loads((tmp_path / "s" / "generation.json").read_text())["settings"]
    rates = settings["prompt_decay_db_per_s"]  # the prompt window's, at the codec's rate: its partials' -6 dB/s
    n_fft = 2 * (len(band_of_bins(sr)) - 1)
    assert settings["prompt_onset_rate"] == 0.0 and len(rates) == BANDS
    assert rates[int(band_of_bins(sr)[round(440 * n_fft / sr)])] == pytest.approx(-6, abs=0.5)
    # the same codes (the same cooled temperature both times), faded band by band as the prompt was dying
    np.testing.assert_allclose(faded.numpy(), ring_out_whole(held, sr, [rates], [0.0]).numpy(), atol=1e-5)
    assert any("sampled at temperature 0.50" in note and "let ring out as the prompt's sound was dying" in note
               for note in report["notes"])
    one_shot = generate(trained_run, GenerationRequest(**{**request.__dict__, "out": tmp_path / "g"}), progress=False)
    assert one_shot["settings"]["ring_out"] and one_shot["notes"] == report["notes"]


def test_the_command_line_takes_both_and_refuses_a_negative_scale_in_one_line(trained_run, tmp_path):
    import json
    import subprocess
    import sys

    import soundfile as sf

    sf.write(tmp_path / "tone.wav", decaying_tone(2.0, -6.0).numpy(), SR)
    base = [sys.executable, "-m", "pianogen", "generate", str(trained_run), "--prompt", str(tmp_path / "tone.wav"),
            "--seconds", "0.3", "--prompt-seconds", "1.5"]
    bad = subprocess.run([*base, "--quiet-temperature-scale", "-1"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "-1" in bad.stderr, bad.stderr
    done = subprocess.run([*base, "--ring-out", "--quiet-temperature-scale", "0.25", "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "g" / "generation.json").read_text())
    assert report["settings"]["ring_out"] is True and report["settings"]["quiet_temperature_scale"] == 0.25
    assert "sampled at temperature 0.25" in done.stderr  # the run's temperature 1, its prompt strikes nothing
