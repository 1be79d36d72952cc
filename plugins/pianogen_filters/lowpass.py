"""Butterworth low-pass post-filter: the report's cut at 0.05 of Nyquist, as a cascade of biquads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from pianogen.errors import PianogenError
from pianogen.interfaces import PostFilter, StreamingFilter


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
        # lowpass_biquad itself clamps every section's output to [-1, 1], which would clip the
        # resonant sections of higher orders; lfilter with clamp=False runs the same biquads unclipped.
        x = wav.double()  # the poles sit near z = 1 at low cutoffs: keep the recursion in float64
        sections = self.sections(sample_rate)
        for a, b in sections:
            x = AF.lfilter(x, a.to(x.device), b.to(x.device), clamp=False)
        if self.config.zero_phase:
            x = x.flip(-1)
            for a, b in sections:
                x = AF.lfilter(x, a.to(x.device), b.to(x.device), clamp=False)
            x = x.flip(-1)
        return x.to(wav.dtype)

    def sections(self, sample_rate: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        cutoff_hz = self.config.cutoff * sample_rate / 2
        return [lowpass_coefficients(cutoff_hz, sample_rate, q) for q in butterworth_q(self.config.order)]

    def stream(self, sample_rate: int) -> LowpassStream | None:
        """Chunk by chunk when causal; zero_phase runs backwards from the end, so it filters finished files only."""
        return None if self.config.zero_phase else LowpassStream(self.sections(sample_rate))


class LowpassStream(StreamingFilter):
    """The causal Lowpass (zero_phase off) chunk by chunk: each biquad keeps its last two inputs and outputs.

    The section a0·y[n] + a1·y[n-1] + a2·y[n-2] = b0·x[n] + b1·x[n-1] + b2·x[n-2] over a chunk is the same
    recursion from a zero state plus a forcing f on the chunk's first two samples (the terms that reach
    back into the previous chunk), so torchaudio's lfilter still runs the whole chunk at once.
    """

    def __init__(self, sections: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.sections = sections
        self.state: list[torch.Tensor | None] = [None] * len(sections)  # [B, 1, 4]: x[-1], x[-2], y[-1], y[-2]
        radius = max(float(abs(r)) for a, _ in sections for r in np.roots(a.numpy()))
        self.settle_samples = math.ceil(math.log(1e-6) / math.log(radius)) if radius > 0 else 2

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        x = chunk.double()
        for i, (a, b) in enumerate(self.sections):
            a, b = a.to(x.device), b.to(x.device)
            y = AF.lfilter(x, a, b, clamp=False)
            past = self.state[i]
            if past is not None:
                x1, x2, y1, y2 = past.unbind(-1)
                forcing = torch.zeros_like(x)
                forcing[..., 0] = b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
                if x.shape[-1] > 1:  # a one-sample chunk: the next chunk's forcing carries this term
                    forcing[..., 1] = b[2] * x1 - a[2] * y1
                y = y + AF.lfilter(forcing, a, torch.tensor([1.0, 0.0, 0.0], dtype=a.dtype, device=a.device),
                                   clamp=False)
            xs = x if past is None else torch.cat([past[..., [1, 0]], x], dim=-1)  # oldest first
            ys = y if past is None else torch.cat([past[..., [3, 2]], y], dim=-1)
            xs = torch.nn.functional.pad(xs, (max(0, 2 - xs.shape[-1]), 0))
            ys = torch.nn.functional.pad(ys, (max(0, 2 - ys.shape[-1]), 0))
            self.state[i] = torch.stack([xs[..., -1], xs[..., -2], ys[..., -1], ys[..., -2]], dim=-1)
            x = y
        return x.to(chunk.dtype)


def lowpass(**config) -> Lowpass:
    """``get_postfilter("lowpass", cutoff=0.05, order=2, zero_phase=False)``."""
    return Lowpass(LowpassConfig(**config))

