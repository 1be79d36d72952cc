"""The lowpass post-filter: shapes, Butterworth response (-3 dB at cutoff, 6·order dB/octave), zero phase."""

from __future__ import annotations

import math

import pytest
import torch

import pianogen
from pianogen.errors import PianogenError

SR = 16000


def gain_db(freq_hz: float, **config) -> float:
    """Steady-state gain of the filter for a sine at freq_hz (the first half second is transient)."""
    t = torch.arange(2 * SR, dtype=torch.float64) / SR  # float32 phases would add broadband noise at -50 dB
    tone = (0.5 * torch.sin(2 * math.pi * freq_hz * t)).float().view(1, 1, -1)
    out = pianogen.get_postfilter("lowpass", **config)(tone, SR)
    steady = slice(SR // 2, 3 * SR // 2)  # away from both edges (zero phase runs backwards too)
    return 20 * math.log10(out[..., steady].pow(2).mean().sqrt() / tone[..., steady].pow(2).mean().sqrt())


def test_shape_and_dtype_are_kept():
    wav = torch.randn(3, 1, 4000).clamp(-1, 1)
    out = pianogen.get_postfilter("lowpass", order=4, zero_phase=True)(wav, SR)
    assert out.shape == wav.shape and out.dtype == wav.dtype


@pytest.mark.parametrize("order", [2, 4])
def test_butterworth_response(order):
    cutoff_hz = 0.05 * SR / 2  # the report's default: 400 Hz at 16 kHz
    assert abs(gain_db(0.1 * cutoff_hz, order=order)) < 0.1  # passband
    assert gain_db(cutoff_hz, order=order) == pytest.approx(-3.01, abs=0.2)
    # analog Butterworth: -10·log10(1 + (f/fc)^(2n)); the bilinear transform only attenuates more
    stopband = gain_db(8 * cutoff_hz, order=order)
    assert -6.02 * 3 * order - 8 < stopband < -10 * math.log10(1 + 8 ** (2 * order)) + 0.5


def test_zero_phase_doubles_the_attenuation():
    cutoff_hz = 0.05 * SR / 2
    assert gain_db(cutoff_hz, zero_phase=True) == pytest.approx(-6.02, abs=0.3)
    assert gain_db(8 * cutoff_hz, zero_phase=True) == pytest.approx(2 * gain_db(8 * cutoff_hz), abs=0.5)


def test_loud_input_is_not_clipped_between_sections():
    wav = torch.full((1, 1, 2000), 0.99)  # a step: the resonant section of order 4 overshoots 1.0
    out = pianogen.get_postfilter("lowpass", order=4)(wav, SR)
    assert out.max() > 1.0


def test_bad_config():
    for config in (dict(cutoff=0.0), dict(cutoff=1.2), dict(order=3)):
        with pytest.raises(PianogenError):
            pianogen.get_postfilter("lowpass", **config)


@pytest.mark.parametrize("order", [2, 4])
def test_causal_lowpass_streams_chunk_by_chunk_as_one_call_and_zero_phase_does_not(order):
    from pianogen_filters.lowpass import Lowpass, LowpassConfig

    wav = torch.randn(2, 1, 3000, generator=torch.Generator().manual_seed(0)) * 0.3
    whole = Lowpass(LowpassConfig(cutoff=0.05, order=order))
    stream = whole.stream(16000)
    sizes, start, chunks = [1, 1, 5, 700, 2, 1200], 0, []
    for size in [*sizes, wav.shape[-1] - sum(sizes)]:
        chunks.append(stream(wav[..., start:start + size]))
        start += size
    torch.testing.assert_close(torch.cat(chunks, dim=-1), whole(wav, 16000), atol=1e-6, rtol=0)
    assert 10 < stream.settle_samples < 3000  # poles well inside the unit circle at 400 Hz
    assert Lowpass(LowpassConfig(zero_phase=True)).stream(16000) is None
