"""Ring-out: after a prompt that left a sound ringing, the continuation dies away as that sound was dying.

Why: cooled after a quiet prompt (prompt_end.py), the piano model no longer strikes a lone note again, but it
holds it at the level the prompt ended on for the whole continuation: a drone, where the note's own tail fades
(RESULTS.md, "A sound left ringing"). A string nobody strikes again only decays, and each partial at its own rate:
the high ones die first, so the sound's overall level falls fast at first, then slowly. So the prompt's last
RECENT_SECONDS are split into BANDS log-spaced frequency bands, a line is fitted through each band's level (dB a
second, never rising), and the continuation's short-time spectrum is faded band by band along those lines from
its start, as far as the prompt's end was quiet (``quietness``: in full when it struck nothing, not at all after
busy playing). On the 8 Salamander test notes, carrying each band's line of the 2-5 s on predicts the 5-13 s level
to 3.8 dB on average and the overall slope as -1.09 dB/s against the true -1.02; one broadband line predicts
-3.43 and misses by 9.8 dB (``benchmarks/ring_out_bands.py``). A gain, not a ceiling: limiting each band to its
line frame by frame (tried) made the levels waver from frame to frame, and the transcriber heard the wavering as
notes (3.23 notes/s after the test notes against 2.78 faded smoothly; the true 1.53).

Streaming: ``RingOut`` is an overlap-add STFT processor fed in chunks of any size; each frame's gains depend on
its time alone, and it hands out every sample no later frame will touch, the rest on ``flush``. Frames sit on one
grid from the continuation's start and read nothing before it, so chunked and one-shot audio are the same (up to
float rounding), N_FFT samples (64 ms) later.
"""

from __future__ import annotations

import math

import torch

from pianogen.generation.prompt_end import (
    DEEPEST_FADE_DB,
    RECENT_SECONDS,
    STEEPEST_DECAY_DB_PER_S,
    line_slope,
    quietness,
)

BANDS = 24  # log-spaced from LOWEST_HZ to Nyquist: 8, 24 and 64 predicted the true tails alike, 1 band did not
LOWEST_HZ = 30.0
WINDOW_SECONDS = 0.064  # STFT window; a quarter of it the hop (Hann, 75 % overlap: its square sums to a constant)


def _frame(sample_rate: int) -> tuple[int, int]:
    n_fft = 1 << max(2, round(WINDOW_SECONDS * sample_rate - 1).bit_length())
    return n_fft, n_fft // 4


def band_of_bins(sample_rate: int, bands: int = BANDS) -> torch.Tensor:
    """LongTensor[n_fft // 2 + 1]: each STFT bin's band (0..bands-1), log-spaced from LOWEST_HZ to Nyquist; bins
    below LOWEST_HZ are in band 0."""
    n_fft, _ = _frame(sample_rate)
    hz = torch.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = torch.logspace(math.log10(LOWEST_HZ), math.log10(sample_rate / 2), bands + 1)
    return torch.bucketize(hz, edges[1:-1], right=True).clamp(0, bands - 1)


def _band_power(frames: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Windowed frames [..., n_fft] -> each band's power [..., BANDS] (of the one-sided spectrum's bins)."""
    power = torch.fft.rfft(frames).abs() ** 2
    bands = torch.zeros(*power.shape[:-1], BANDS, dtype=power.dtype)
    return bands.index_add_(-1, band_of_bins(sample_rate), power)


def band_decay_rates(wav: torch.Tensor, sample_rate: int, seconds: float = RECENT_SECONDS) -> list[float] | None:
    """How fast each band of the last ``seconds`` of ``wav`` (FloatTensor[S] mono) dies away, dB a second: the
    slopes of least-squares lines through the bands' levels, never rising (0) nor steeper than
    STEEPEST_DECAY_DB_PER_S. None when under half a second."""
    n_fft, hop = _frame(sample_rate)
    x = wav.reshape(-1).double()[-round(seconds * sample_rate):]
    if x.numel() < max(n_fft, sample_rate // 2):
        return None
    frames = x.unfold(0, n_fft, hop) * torch.hann_window(n_fft, dtype=torch.float64)  # [T, n_fft]
    level = 10 * torch.log10(_band_power(frames, sample_rate).T + 1e-12)  # [BANDS, T]
    t = torch.arange(level.shape[1], dtype=torch.float64) * hop / sample_rate
    return line_slope(t, level).clamp(STEEPEST_DECAY_DB_PER_S, 0.0).tolist()


class RingOut:
    """Fade a continuation [B, S] band by band: ``(chunk) -> the samples ready`` as chunks come, ``flush()`` for
    the rest. ``rates``: each row's ``band_decay_rates`` of its prompt (None: left as it is), ``onset_rates`` each
    row's prompt's onsets a second (``quietness`` scales the fade)."""

    def __init__(self, sample_rate: int, rates: list[list[float] | None], onset_rates: list[float | None]) -> None:
        self.sample_rate = sample_rate
        self.n_fft, self.hop = _frame(sample_rate)
        rows = len(rates)
        self.slopes = torch.tensor([[quietness(q) * r for r in rate] if rate else [0.0] * BANDS
                                    for rate, q in zip(rates, onset_rates)], dtype=torch.float64)  # [B, BANDS] dB/s
        self.bins = band_of_bins(sample_rate)
        self.window = torch.hann_window(self.n_fft, dtype=torch.float64)
        self.norm = float((self.window ** 2).view(4, -1).sum(dim=0)[0])  # sum of the squared windows at a sample
        # the input from where the next frame starts; frame m reads [m hop - n_fft + hop, m hop + hop): the first
        # frames reach before the continuation, into zeros, so its first samples are overlapped as fully as the rest
        self.pending = torch.zeros(rows, self.n_fft - self.hop, dtype=torch.float64)
        self.out = torch.zeros(rows, self.n_fft - self.hop, dtype=torch.float64)  # overlap-add not yet final
        self.frame, self.taken, self.given = 0, 0, 0  # frames done, input samples taken, output samples given

    @property
    def idle(self) -> bool:
        """Nothing to fade: every row's slopes are 0."""
        return not bool(self.slopes.any())

    def whole(self, audio: torch.Tensor) -> torch.Tensor:
        """A whole continuation FloatTensor[B, S] faded: as if fed in chunks, then flushed."""
        return torch.cat([self(audio), self.flush()], dim=1).to(audio.dtype)

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """chunk FloatTensor[B, n] (the continuation's next samples) -> FloatTensor[B, m]: its next faded samples
        (m <= what came in so far)."""
        self.pending = torch.cat([self.pending, chunk.detach().to("cpu", torch.float64)], dim=1)
        self.taken += chunk.shape[-1]
        done = []
        while self.pending.shape[1] >= self.n_fft:
            done.append(self._step())
        return (torch.cat(done, dim=1) if done else torch.zeros(chunk.shape[0], 0, dtype=torch.float64)).float()

    def flush(self) -> torch.Tensor:
        """The samples still held back, through the end of what came in (zeros read past it)."""
        done = []
        while self.given < self.taken:
            if self.pending.shape[1] < self.n_fft:
                self.pending = torch.cat([self.pending, torch.zeros(self.pending.shape[0], self.n_fft,
                                                                    dtype=torch.float64)], dim=1)
            done.append(self._step())
        tail = torch.cat(done, dim=1) if done else torch.zeros(self.pending.shape[0], 0, dtype=torch.float64)
        extra, self.given = self.given - self.taken, self.taken
        return tail[:, :tail.shape[1] - extra].float()

    def _step(self) -> torch.Tensor:
        """One frame: faded, overlap-added; returns the hop of output no later frame touches."""
        segment = self.pending[:, :self.n_fft] * self.window
        centre = (self.frame * self.hop - (self.n_fft - self.hop) + self.n_fft / 2) / self.sample_rate
        gain_db = (self.slopes * max(0.0, centre)).clamp_min(DEEPEST_FADE_DB)  # [B, BANDS]
        faded = torch.fft.irfft(torch.fft.rfft(segment) * torch.pow(10.0, gain_db / 20)[:, self.bins], n=self.n_fft)
        overlap = torch.cat([self.out, torch.zeros(self.out.shape[0], self.hop, dtype=torch.float64)], dim=1)
        overlap += faded * self.window
        ready, self.out = overlap[:, :self.hop] / self.norm, overlap[:, self.hop:]
        self.pending = self.pending[:, self.hop:]
        self.frame += 1
        if self.frame * self.hop <= self.n_fft - self.hop:  # hops wholly before the continuation's start
            return torch.zeros(ready.shape[0], 0, dtype=torch.float64)
        self.given += ready.shape[1]
        return ready


def ring_out_whole(audio: torch.Tensor, sample_rate: int, rates: list[list[float] | None],
                   onset_rates: list[float | None]) -> torch.Tensor:
    """A whole continuation FloatTensor[B, S] faded (the same as fed to ``RingOut`` in chunks)."""
    fader = RingOut(sample_rate, rates, onset_rates)
    return audio if fader.idle else fader.whole(audio)
