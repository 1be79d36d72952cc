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
NOISE_SECONDS = 4.0  # the noise table's length: it repeats after this
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


def oscillator_frequencies(sample_rate: int) -> torch.Tensor:
    """Hz of every oscillator: quarter tones from A0 to 0.95 x Nyquist, DoubleTensor[O]."""
    top = 69 + 12 * math.log2(0.95 * sample_rate / 2 / 440)
    midi = torch.arange(LOWEST_MIDI, top, OSCILLATOR_STEP, dtype=torch.float64)
    return 440.0 * 2 ** ((midi - 69) / 12)


def band_noise(sample_rate: int, bands: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """FloatTensor[N, L]: white noise split into ``bands`` log-spaced bands (40 Hz to Nyquist), unit RMS each;
    seeded, so decoding is deterministic."""
    length = round(seconds * sample_rate)
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
    from the first decoded sample: one phase for the whole sequence, whatever the latent does."""

    def __init__(self, hop: int, sample_rate: int, dim: int, width: int, blocks: int = 3, seed: int = 0) -> None:
        super().__init__()
        self.hop, self.sample_rate = hop, sample_rate
        freqs = oscillator_frequencies(sample_rate)
        self.register_buffer("freqs", freqs, persistent=False)  # float64: phases stay exact over minutes
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("phase0", torch.rand(len(freqs), generator=g, dtype=torch.float64), persistent=False)
        self.register_buffer("noise", band_noise(sample_rate, NOISE_BANDS, NOISE_SECONDS, seed), persistent=False)
        self.inp = nn.Conv1d(dim, width, 1)
        self.blocks = nn.Sequential(*(CausalBlock(width) for _ in range(blocks)))
        self.out = nn.Conv1d(width, len(freqs) + NOISE_BANDS, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -4.0)  # start quiet: exp(-4 - 4) per source

    @property
    def n_oscillators(self) -> int:
        return len(self.freqs)

    def amplitudes(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, D, T] -> [B, O + N, T], each in (0, 1]: exp of a log-amplitude capped at 0."""
        return torch.exp(self.out(self.blocks(self.inp(latent))).clamp(max=4.0) - 4.0)

    def sources(self, first: int, frames: int, dtype: torch.dtype) -> torch.Tensor:
        """Every source's signal over frames [first, first + frames): [O + N, frames, hop]."""
        t = torch.arange(first * self.hop, (first + frames) * self.hop, device=self.freqs.device,
                         dtype=torch.float64)
        cycles = torch.frac(self.freqs[:, None] * t[None] / self.sample_rate + self.phase0[:, None])
        sines = torch.sin(2 * math.pi * cycles)  # [O, S]
        noise = self.noise[:, t.long() % self.noise.shape[1]].double()  # [N, S]
        return torch.cat([sines, noise]).to(dtype).view(-1, frames, self.hop)

    def forward(self, latent: torch.Tensor, block_frames: int = 400) -> torch.Tensor:
        amp = self.amplitudes(latent)  # [B, O + N, T]
        previous = F.pad(amp, (1, 0))[:, :, :-1]  # the frame before each (silence before the first)
        ramp = (torch.arange(1, self.hop + 1, device=amp.device, dtype=amp.dtype) / self.hop)  # [H]
        out = []
        for first in range(0, amp.shape[-1], block_frames):  # bounded memory: [O + N, block, hop] at a time
            a, p = amp[:, :, first:first + block_frames], previous[:, :, first:first + block_frames]
            src = self.sources(first, a.shape[-1], amp.dtype)  # [O + N, T', H]
            out.append(torch.einsum("bit,ith->bth", p, src) + torch.einsum("bit,ith->bth", a - p, src * ramp))
        return torch.cat(out, dim=1).reshape(amp.shape[0], 1, -1)
