"""Butterworth low-pass post-filter: the report's cut at 0.05 of Nyquist, as a cascade of biquads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from pianogen.errors import PianogenError
from pianogen.interfaces import PostFilter


@dataclass
class LowpassConfig:
    cutoff: float = 0.05  # -3 dB point as a fraction of Nyquist (0.05 = 400 Hz at 16 kHz, as in the report)
    order: int = 2  # Butterworth order, even: order / 2 biquad sections; rolls off 6·order dB per octave
    zero_phase: bool = False  # filter forwards then backwards: no phase shift, twice the dB (-6 dB at cutoff)

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff < 1.0:
            raise PianogenError(f"postfilter.cutoff must be in (0, 1) (a fraction of Nyquist), got {self.cutoff}")
        if self.order < 2 or self.order % 2:
            raise PianogenError(f"postfilter.order must be an even number >= 2, got {self.order}")


def butterworth_q(order: int) -> list[float]:
    """Quality factors of the biquads whose cascade is a Butterworth filter of ``order`` (even)."""
    return [1.0 / (2.0 * math.cos((2 * k - 1) * math.pi / (2 * order))) for k in range(1, order // 2 + 1)]


def lowpass_coefficients(cutoff_hz: float, sample_rate: int, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One RBJ-cookbook low-pass biquad, the coefficients ``torchaudio.functional.lowpass_biquad`` uses -> (a, b)."""
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / (2 * q)
    cos_w0 = math.cos(w0)
    b = torch.tensor([(1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2], dtype=torch.float64)
    a = torch.tensor([1 + alpha, -2 * cos_w0, 1 - alpha], dtype=torch.float64)
    return a, b


class Lowpass(PostFilter):
    """wav FloatTensor[B, 1, S] -> the same shape, low-passed."""

    def __init__(self, config: LowpassConfig) -> None:
        self.config = config

    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        cutoff_hz = self.config.cutoff * sample_rate / 2
        # lowpass_biquad itself clamps every section's output to [-1, 1], which would clip the
        # resonant sections of higher orders; lfilter with clamp=False runs the same biquads unclipped.
        x = wav.double()  # the poles sit near z = 1 at low cutoffs: keep the recursion in float64
        sections = [lowpass_coefficients(cutoff_hz, sample_rate, q) for q in butterworth_q(self.config.order)]
        for a, b in sections:
            x = AF.lfilter(x, a.to(x.device), b.to(x.device), clamp=False)
        if self.config.zero_phase:
            x = x.flip(-1)
            for a, b in sections:
                x = AF.lfilter(x, a.to(x.device), b.to(x.device), clamp=False)
            x = x.flip(-1)
        return x.to(wav.dtype)


def lowpass(**config) -> Lowpass:
    """``get_postfilter("lowpass", cutoff=0.05, order=2, zero_phase=False)``."""
    return Lowpass(LowpassConfig(**config))

