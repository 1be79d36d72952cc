"""How the prompt ends: how busy its last seconds are and how fast its sound dies, and what follows from them.

Why: the piano model gives its strike codes about the same probability in a dying tail as where a pianist would
strike next, so one temperature serves only one of the two. At the run's temperature it strikes a lone note again
and again (4.6 notes/s after a Salamander test note whose true continuation only decays, 1.5); cooled to 0.5 it
lets that note ring, but then after a performance it strikes a fifth of the true continuation's notes and holds a
wash (RESULTS.md, "What moves the notes after a lone note"). What tells the two apart is the prompt itself: a
player who struck nothing for the last three seconds has let the sound ring. So the sampler reads that from the
prompt's audio, as the prompt prior reads its pitch classes (sampling.py): the temperature is scaled by
``quiet_scale`` after a prompt whose last RECENT_SECONDS strike nothing, and by 1 (the run's temperature) once
they strike BUSY_ONSETS_PER_SECOND or more, linearly between.

Cooled, the model no longer strikes the lone note again but holds it, a drone; ``ring_out.py`` fades it as the
prompt's sound was dying, by the same quietness.
"""

from __future__ import annotations

import torch

RECENT_SECONDS = 3.0  # the prompt's end that is read: long enough to hold a slow player's next strike
BUSY_ONSETS_PER_SECOND = 1.0  # at or above this the run's temperature applies unscaled
ONSET_RISE_DB = 2.0  # mean rise over the Mel bands at an onset; a lower bar errs toward the run's temperature
ANALYSIS_RATE = 16000
HOP = 160  # 10 ms frames
N_FFT = 1024
AFTER_FRAMES, BEFORE_FRAMES = 6, 3  # the rise: mean of the next 60 ms over the mean of the 30 ms before
PEAK_FRAMES = 5  # one onset per 50 ms either side
DYNAMIC_RANGE_DB = 80.0  # bands further below the loudest are floored, so silence's noise makes no onsets
LEVEL_FRAME_SECONDS = 0.05  # the level's frames, for the decay's slope
STEEPEST_DECAY_DB_PER_S = -40.0  # a prompt cut off mid-note does not silence its continuation at once
DEEPEST_FADE_DB = -60.0  # the fade stops here: the sound is gone by then


def onset_times(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """wav FloatTensor[S] (mono) -> FloatTensor[N]: the onsets' times in seconds from its start."""
    import torchaudio

    x = wav.reshape(-1).float()
    if sample_rate != ANALYSIS_RATE:
        x = torchaudio.functional.resample(x, sample_rate, ANALYSIS_RATE)
    if x.numel() < N_FFT:
        return torch.zeros(0)
    mel = torchaudio.transforms.MelSpectrogram(ANALYSIS_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=64, f_min=30.0,
                                               f_max=8000.0)(x)  # [M, T]
    db = 10 * torch.log10(mel + 1e-10)
    db = db.clamp_min(float(db.max()) - DYNAMIC_RANGE_DB)
    T = db.shape[1]
    csum = torch.nn.functional.pad(db.cumsum(dim=1), (1, 0))  # csum[:, i] = sum of frames < i
    # frames whose window reaches past the end read reflect-padding, whose seam clicks: not an onset
    edge = -(-N_FFT // 2 // HOP)
    t = torch.arange(BEFORE_FRAMES, max(BEFORE_FRAMES, T - AFTER_FRAMES - edge + 1))
    after = (csum[:, t + AFTER_FRAMES] - csum[:, t]) / AFTER_FRAMES
    before = (csum[:, t] - csum[:, t - BEFORE_FRAMES]) / BEFORE_FRAMES
    rise = torch.zeros(T)
    rise[t] = (after - before).clamp_min(0).mean(dim=0)
    local_max = torch.nn.functional.max_pool1d(rise[None, None], 2 * PEAK_FRAMES + 1, 1, PEAK_FRAMES)[0, 0]
    peaks = torch.nonzero((rise >= ONSET_RISE_DB) & (rise == local_max)).flatten()
    return peaks.float() * HOP / ANALYSIS_RATE


def recent_onset_rate(wav: torch.Tensor, sample_rate: int, seconds: float = RECENT_SECONDS) -> float | None:
    """Onsets per second in the last ``seconds`` of ``wav`` (FloatTensor[S] mono); None when it is too short to
    tell (under half a second)."""
    duration = wav.numel() / sample_rate
    span = min(seconds, duration)
    if span < 0.5:
        return None
    onsets = onset_times(wav, sample_rate)
    return int((onsets >= duration - span).sum()) / span


def line_slope(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The slope of the least-squares line through ``y`` [..., T] over times ``t`` [T] (per row of ``y``)."""
    centred = t - t.mean()
    return ((y - y.mean(dim=-1, keepdim=True)) * centred).sum(dim=-1) / centred.pow(2).sum()


def level_slope(wav: torch.Tensor, sample_rate: int) -> float | None:
    """The slope of ``wav``'s level (FloatTensor[S] mono), in dB a second: a least-squares line through its
    frames' RMS in dB (frames of LEVEL_FRAME_SECONDS). None when under half a second."""
    x = wav.reshape(-1).float()
    frame = max(1, round(LEVEL_FRAME_SECONDS * sample_rate))
    n = x.numel() // frame
    if n * frame < 0.5 * sample_rate or n < 2:
        return None
    level = 10 * torch.log10(x[x.numel() - n * frame:].view(n, frame).pow(2).mean(dim=1) + 1e-12)
    return float(line_slope(torch.arange(n, dtype=torch.float32) * LEVEL_FRAME_SECONDS, level))


def quietness(onset_rate: float | None) -> float:
    """1 after a prompt whose last seconds strike nothing, 0 from BUSY_ONSETS_PER_SECOND on (or unknown)."""
    if onset_rate is None:
        return 0.0
    return 1.0 - min(1.0, onset_rate / BUSY_ONSETS_PER_SECOND)


def scaled_temperature(temperature: float, quiet_scale: float, onset_rate: float | None) -> float:
    """The temperature after a prompt striking ``onset_rate`` onsets/s at its end: ``temperature x quiet_scale``
    at 0, ``temperature`` from BUSY_ONSETS_PER_SECOND on, linear between; unscaled when the rate is unknown."""
    return temperature * (1.0 - (1.0 - quiet_scale) * quietness(onset_rate))
