"""Splicing a continuation onto a pianist's take: window, crossfade, loudness, bit-exact original."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from pianogen.errors import PianogenError
from pianogen.generation.takes import (
    MAX_GAIN_DB,
    Recording,
    equal_power_crossfade,
    loudness_lufs,
    prompt_window,
    read_recording,
    splice,
    write_recording,
)


@pytest.mark.parametrize("start, end, window, noted", [
    (None, None, (6.0, 10.0), False),  # default: the last prompt_seconds
    (None, 7.0, (3.0, 7.0), False),  # --to: prompt_seconds before it
    (None, -2.0, (4.0, 8.0), False),  # negative = from the end
    (2.0, None, (2.0, 6.0), False),  # --from: prompt_seconds after it
    (-3.0, None, (7.0, 10.0), False),  # ... cut at the end
    (1.0, 9.5, (1.0, 9.5), False),  # both: exactly that window
    (None, 2.5, (0.0, 2.5), True),  # cut at the start: said
])
def test_prompt_window(start, end, window, noted):
    lo, hi, notes = prompt_window(10.0, 4.0, start, end)
    assert (lo, hi) == pytest.approx(window) and bool(notes) == noted


@pytest.mark.parametrize("start, end, message", [
    (float("nan"), None, "--from must be a finite number"),
    (None, float("inf"), "--to must be a finite number"),
    (None, 12.0, "not inside the 10.00 s recording"),
    (5.0, 4.0, "not inside"),
    (-20.0, -15.0, "not inside"),
])
def test_prompt_window_outside_the_recording_is_refused(start, end, message):
    with pytest.raises(PianogenError, match=message):
        prompt_window(10.0, 4.0, start, end)


def test_equal_power_crossfade_keeps_uncorrelated_power():
    """Two independent noises of unit power: the join keeps unit power (a linear fade would dip to 2/3)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 200_000, generator=g), torch.randn(1, 200_000, generator=g)
    joined = equal_power_crossfade(a, b)
    middle = joined[:, 80_000:120_000]
    assert float(middle.pow(2).mean()) == pytest.approx(1.0, abs=0.03)
    linear = torch.linspace(0, 1, 200_000)
    assert float((a * (1 - linear) + b * linear)[:, 80_000:120_000].pow(2).mean()) < 0.55
    assert torch.allclose(joined[:, :1], a[:, :1], atol=1e-4) and torch.allclose(joined[:, -1:], b[:, -1:], atol=1e-4)


def tone(seconds: float, rate: int, amplitude: float, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return amplitude * torch.sin(2 * math.pi * freq * t)


def test_splice_keeps_the_original_matches_loudness_and_joins_at_the_cut():
    rate, codec_rate = 44100, 8000
    original = Recording(torch.stack([tone(3, rate, 0.2), tone(3, rate, 0.1, 660)]).float(), rate, "PCM_16")
    cut, prompt_start = round(2.5 * rate), round(1.5 * rate)
    # the codec's rendering: 1 s of (re-synthesised) prompt, then 2 s of continuation, 12 dB quieter
    generated = torch.cat([tone(1, codec_rate, 0.05), tone(2, codec_rate, 0.05, 523)]).float()
    joined = splice(original, cut, prompt_start, generated, codec_rate, join=codec_rate, crossfade_s=0.05)
    take = joined.take.samples
    fade = round(0.05 * rate)
    assert take.shape == (2, cut + 2 * rate) and joined.take.sample_rate == rate
    assert torch.equal(take[:, : cut - fade], original.samples[:, : cut - fade])
    prompt_lufs = loudness_lufs(original.samples[:, prompt_start:cut], rate)
    assert joined.prompt_lufs == pytest.approx(prompt_lufs)
    assert loudness_lufs(take[:, cut:], rate) == pytest.approx(prompt_lufs, abs=0.3)
    assert joined.gain_db > 6  # it was much quieter, and was brought up


def test_after_a_fading_prompt_the_continuation_joins_at_the_level_the_prompt_ended_on():
    """The gain corrects the codec's level where the continuation starts (its rendering of the prompt's last
    CALIBRATION_S against the recording's), so a continuation that goes on as quietly as the prompt ended stays
    that quiet: it is not raised to the prompt's loudness, nor by the codec's error on the loud attack."""
    rate = 16000
    fading = torch.cat([tone(1, rate, 0.5), tone(3, rate, 0.05)]).float()  # a loud chord, then its quiet tail
    original = Recording(fading[None], rate, "PCM_16")
    # the codec renders the chord 12 dB low, the tail 6 dB low, and continues at its tail's level for 2 s
    rendering = torch.cat([0.25 * fading[:rate], 0.5 * fading[rate:]])
    generated = torch.cat([rendering, tone(2, rate, 0.025)]).float()
    joined = splice(original, 4 * rate, 0, generated, rate, join=4 * rate, crossfade_s=0.0)
    assert joined.gain_db == pytest.approx(20 * math.log10(2), abs=0.1)
    assert joined.rendering_lufs == pytest.approx(joined.prompt_end_lufs - joined.gain_db, abs=1e-6)
    tail = loudness_lufs(original.samples[:, 2 * rate:], rate)
    assert joined.prompt_end_lufs == pytest.approx(tail, abs=1e-6)
    assert loudness_lufs(joined.take.samples[:, 4 * rate:], rate) == pytest.approx(tail, abs=0.3)
    assert joined.prompt_lufs > tail + 10  # where matching the continuation to the prompt would have put it
    # no rendering of the prompt's end to compare (the codec's audio starts later): the continuation is matched
    short = splice(original, 4 * rate, 0, generated[-3 * rate:], rate, join=rate, crossfade_s=0.0)
    assert short.rendering_lufs is None
    assert short.gain_db == MAX_GAIN_DB  # towards the prompt's loudness, 25 dB up, as far as the cap allows


def test_a_continuation_louder_than_its_prompt_is_brought_down_to_the_prompts_loudness():
    """The codec renders the prompt at its level (no correction), but the continuation breaks into playing 12 dB
    louder: the take does not carry that outburst above the prompt's loudness."""
    rate = 16000
    original = Recording(tone(3, rate, 0.2)[None].float(), rate, "PCM_16")
    generated = torch.cat([tone(3, rate, 0.2), tone(2, rate, 0.8)]).float()
    joined = splice(original, 3 * rate, 0, generated, rate, join=3 * rate, crossfade_s=0.0)
    assert joined.rendering_lufs == pytest.approx(joined.prompt_end_lufs, abs=1e-6)  # the codec's level is right
    assert joined.gain_db == pytest.approx(-20 * math.log10(4), abs=0.1)
    assert loudness_lufs(joined.take.samples[:, 3 * rate:], rate) == pytest.approx(joined.prompt_lufs, abs=0.1)


def test_splice_never_clips_and_leaves_silence_alone():
    rate = 8000
    original = Recording(tone(2, rate, 0.9)[None].float(), rate, "PCM_16")
    loud_peaky = torch.cat([tone(1, rate, 0.01), torch.zeros(rate)])
    loud_peaky[rate + 100] = 0.5  # one click: matching loudness would push it far past full scale
    joined = splice(original, 2 * rate, rate, loud_peaky.float(), rate, join=rate, crossfade_s=0.0)
    assert float(joined.take.samples[:, 2 * rate:].abs().max()) <= 0.99 + 1e-6
    silent = splice(original, 2 * rate, rate, torch.zeros(2 * rate), rate, join=rate, crossfade_s=0.01)
    assert silent.continuation_lufs is None and silent.gain_db == 0.0


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
                                          ("WAV", "PCM_U8"), ("WAV", "ULAW"), ("WAV", "ALAW"), ("FLAC", "PCM_S8")])
def test_recordings_come_back_bit_exact(tmp_path, fmt, subtype):
    """The take keeps its original's bit depth and encoding (8-bit, mu-law and A-law included: they were
    written as 16-bit PCM); signed 8-bit FLAC becomes WAV's unsigned 8-bit, the same values."""
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, (3000, 2))
    if subtype == "FLOAT":
        data[0, 0] = 1.5  # float files may exceed full scale; nothing may clip them
    source = tmp_path / f"in.{fmt.lower()}"
    sf.write(source, data, 48000, format=fmt, subtype=subtype)
    recording = read_recording(source)
    write_recording(tmp_path / "out.wav", recording)
    kind = "float64" if subtype == "FLOAT" else "int32"
    again, rate = sf.read(tmp_path / "out.wav", dtype=kind)
    assert rate == 48000 and sf.info(tmp_path / "out.wav").subtype == {"PCM_S8": "PCM_U8"}.get(subtype, subtype)
    assert np.array_equal(again, sf.read(source, dtype=kind)[0])
