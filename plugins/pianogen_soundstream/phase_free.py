"""A phase-free encoder and a decoder with its own running phase, for tokens that hold still under a held note.

Why: the waveform encoder reads each partial's phase at the frame instant. At 80 frames/s an A4 advances
5.5 periods per hop, so its latent flips sign every frame and its codes alternate; a token model trained on
such codes must predict phases, and what it samples decodes to hiss (RESULTS.md, "Why the codes do not hold
still"). ``MagnitudeEncoder`` reads log-magnitude spectra instead, so a held note's latent changes only as the
note decays. A convolutional decoder cannot follow it: fed a constant latent, it outputs a signal periodic at
the frame rate (harmonics of 80 Hz: no A4 at all). ``SineBankDecoder`` keeps the phase itself: a bank of sine
oscillators at every quarter tone from A0 up, running from the first decoded sample, and noise in bands for
hammers and pedal, their amplitudes set per frame by a small causal network over the latent.

Shapes: B batch, S samples, D latent dim, T frames, W width, O oscillators, N noise bands, H hop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NOISE_BANDS = 16  # log-spaced bands of noise from 40 Hz to Nyquist
PERIOD_SECONDS = 4.0  # every source repeats after (about) this: oscillators sit on a 1/4 Hz grid, noise loops
OSCILLATOR_STEP = 0.5  # semitones between oscillators (quarter tones: piano partials sit off the semitones)
LOWEST_MIDI = 21.0  # A0, the piano's lowest key


class CausalBlock(nn.Module):
    """x + conv3(act(x)) over frames, padded on the left only: a frame never reads later frames."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, W, T] -> [B, W, T]
        return x + self.conv(F.pad(F.elu(x), (2, 0)))


class MagnitudeEncoder(nn.Module):
    """[B, 1, S] (S a multiple of the hop) -> [B, D, S / hop]: log-magnitude STFT frames, each window ending at
    its frame's end (causal), through a 1x1 map, causal blocks and a 1x1 map to D."""

    def __init__(self, hop: int, dim: int, width: int, blocks: int = 3) -> None:
        super().__init__()
        self.hop = hop
        self.n_fft = 2 ** math.ceil(math.log2(4 * hop))  # 1024 at hop 200: 15.6 Hz bins, 64 ms at 16 kHz
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.inp = nn.Conv1d(self.n_fft // 2 + 1, width, 1)
        self.blocks = nn.Sequential(*(CausalBlock(width) for _ in range(blocks)))
        self.out = nn.Conv1d(width, dim, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav[:, 0], (self.n_fft - self.hop, 0))
        spectrum = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        features = torch.log(spectrum.abs() + 1e-3)  # [B, F, T]
        return self.out(self.blocks(self.inp(features)))


def period_frames(sample_rate: int, hop: int) -> int:
    """Frames after which every source of the bank repeats exactly: PERIOD_SECONDS rounded up to whole frames."""
    return math.ceil(PERIOD_SECONDS * sample_rate / hop)


def oscillator_frequencies(sample_rate: int, period_samples: int | None = None) -> torch.Tensor:
    """Hz of every oscillator, DoubleTensor[O]: quarter tones from A0 to 0.95 x Nyquist, each moved to the nearest
    whole number of cycles per ``period_samples`` (1/4 Hz at 16 kHz: at most 8 cents at A0, 0.1 at A4), so the
    bank repeats exactly every period and a chunk decoded from a period's first frame sounds as in one piece."""
    top = 69 + 12 * math.log2(0.95 * sample_rate / 2 / 440)
    midi = torch.arange(LOWEST_MIDI, top, OSCILLATOR_STEP, dtype=torch.float64)
    freqs = 440.0 * 2 ** ((midi - 69) / 12)
    if period_samples:
        grid = sample_rate / period_samples
        freqs = torch.round(freqs / grid) * grid
    return freqs


def band_noise(sample_rate: int, bands: int, length: int, seed: int = 0) -> torch.Tensor:
    """FloatTensor[N, length]: white noise split into ``bands`` log-spaced bands (40 Hz to Nyquist), unit RMS
    each, looping seamlessly (split in the frequency domain of the whole loop); seeded: decoding is deterministic."""
    white = torch.randn(length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spectrum = torch.fft.rfft(white)
    freqs = torch.fft.rfftfreq(length, 1 / sample_rate, dtype=torch.float64)
    edges = torch.logspace(math.log10(40.0), math.log10(sample_rate / 2), bands + 1, dtype=torch.float64)
    edges[0] = 0.0
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = torch.fft.irfft(spectrum * ((freqs >= lo) & (freqs <= hi)), n=length)
        out.append(band / band.pow(2).mean().sqrt().clamp_min(1e-12))
    return torch.stack(out).float()


class SineBankDecoder(nn.Module):
    """[B, D, T] -> [B, 1, T * hop]: per frame, amplitudes of O sine oscillators and N noise bands from a causal
    network; within a frame each amplitude moves linearly from the previous frame's value to this frame's
    (the frame before the first is silence). Oscillator i at sample t is sin(2 pi f_i t / sr + phi_i), t counted
    from the first decoded sample: one phase for the whole sequence, whatever the latent does. Every source repeats
    after ``period`` frames, so decoding may start at any multiple of it (``context_frames`` before a chunk)."""

    def __init__(self, hop: int, sample_rate: int, dim: int, width: int, blocks: int = 3, seed: int = 0) -> None:
        super().__init__()
        self.hop, self.sample_rate = hop, sample_rate
        self.period = period_frames(sample_rate, hop)
        freqs = oscillator_frequencies(sample_rate, self.period * hop)
        self.register_buffer("freqs", freqs, persistent=False)  # float64: phases stay exact over minutes
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("phase0", torch.rand(len(freqs), generator=g, dtype=torch.float64), persistent=False)
        self.register_buffer("noise", band_noise(sample_rate, NOISE_BANDS, self.period * hop, seed), persistent=False)
        self.inp = nn.Conv1d(dim, width, 1)
        self.blocks = nn.Sequential(*(CausalBlock(width) for _ in range(blocks)))
        self.out = nn.Conv1d(width, len(freqs) + NOISE_BANDS, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -4.0)  # start quiet: exp(-4 - 4) per source

    @property
    def n_oscillators(self) -> int:
        return len(self.freqs)

    @property
    def context_frames(self) -> int:
        """Frames before a frame that its audio depends on: the causal blocks' two each, and the previous
        frame's amplitudes it ramps from."""
        return 2 * len(self.blocks) + 1

    def amplitudes(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> [B, O + N, T], each in (0, 1]: exp of a log-amplitude capped at 0."""
        return torch.exp(self.out(self.blocks(self.inp(latent))).clamp(max=4.0) - 4.0)

    def frame_phases(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """sin and cos of every oscillator's phase at each frame's first sample, [O, T] each: computed in float64
        from the absolute sample index (exact over hours), then rounded."""
        t = torch.arange(frames, device=self.freqs.device, dtype=torch.float64) * self.hop
        angle = 2 * math.pi * torch.frac(self.freqs[:, None] * t[None] / self.sample_rate + self.phase0[:, None])
        return angle.sin(), angle.cos()

    def within_frame(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of each oscillator's advance j samples into a frame, [O, H] each."""
        j = torch.arange(self.hop, device=self.freqs.device, dtype=torch.float64)
        advance = 2 * math.pi * self.freqs[:, None] * j[None] / self.sample_rate
        return advance.cos().to(dtype), advance.sin().to(dtype)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """sin(theta + a) = sin(theta) cos(a) + cos(theta) sin(a): with theta an oscillator's phase at a frame's
        start and a its advance within the frame (the same for every frame), the bank is four [B*T, O] x [O, H]
        products, and no [O, S] table of sines is ever built."""
        amp = self.amplitudes(latent)  # [B, O + N, T]
        B, _, T = amp.shape
        n_osc = self.n_oscillators
        previous = F.pad(amp, (1, 0))[:, :, :-1]  # the frame before each (silence before the first)
        ramp = torch.arange(1, self.hop + 1, device=amp.device, dtype=amp.dtype) / self.hop  # [H]
        sin_start, cos_start = (x.to(amp.dtype) for x in self.frame_phases(T))  # [O, T]
        cos_in, sin_in = self.within_frame(amp.dtype)  # [O, H]
        out = amp.new_zeros(B, T, self.hop)
        for level, weight in ((previous[:, :n_osc], None), (amp[:, :n_osc] - previous[:, :n_osc], ramp)):  # [B, O, T]
            c, s = (cos_in, sin_in) if weight is None else (cos_in * weight, sin_in * weight)
            out += torch.einsum("bot,oh->bth", level * sin_start, c) + torch.einsum("bot,oh->bth", level * cos_start, s)
        t = torch.arange(T * self.hop, device=amp.device) % self.noise.shape[1]
        noise = self.noise[:, t].to(amp.dtype).view(-1, T, self.hop)  # [N, T, H]
        p, d = previous[:, n_osc:], amp[:, n_osc:] - previous[:, n_osc:]  # [B, N, T]
        out += torch.einsum("bnt,nth->bth", p, noise) + torch.einsum("bnt,nth->bth", d, noise * ramp)
        return out.reshape(B, 1, T * self.hop)
