"""A pianist's take, continued: the prompt window, and the continuation spliced onto the original.

The original recording is read and written back at its own sample rate, channel count and sample
format, so every sample before the join is the pianist's own, bit for bit. The continuation
(codec rate, mono) is resampled, copied to every channel, brought to the recording's level and joined with an
equal-power crossfade that ends exactly where the prompt ends.

The level: the gain that brings the codec's rendering of the prompt's last CALIBRATION_S to the loudness of
the same seconds of the recording (ITU-R BS.1770 via ``torchaudio.functional.loudness``), applied to the
continuation, so the continuation joins at the recording's level and then keeps its own dynamics. Matching the
continuation itself to the prompt's loudness raised whatever followed a fading prompt to the prompt's mean:
after a single decaying Salamander note, +24 dB, a held wash as loud as the note's attack. The codec's level is
not the same for loud and soft sound (that note's re-synthesis is 12 dB below the recording in its first second,
7.5 dB in its fifth, RMS), so it is measured where the continuation starts, not over the whole prompt. And
the continuation is never made louder, as a whole, than the prompt: after a soft note the model can break into
loud playing, which that gain alone carried into the take 11 dB above the note's attack.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from pianogen.data.audio import read_file
from pianogen.errors import PianogenError
from pianogen.paths import atomic_write_bytes

# WAV subtypes a take keeps from its original; anything else (mp3, ogg, ...) is written as 16-bit PCM.
# 8-bit, mu-law and A-law samples decode to floats that encode back to the very same bytes.
KEPT_SUBTYPES = {"PCM_U8", "ULAW", "ALAW", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}
WAV_SUBTYPE = {"PCM_S8": "PCM_U8"}  # signed 8-bit (FLAC, AIFF) has no WAV form; unsigned holds the same values
EXACT_IN_FLOAT64 = {"PCM_32", "DOUBLE"}  # float32 holds 24 bits: these need float64 to come back unchanged
LOUDNESS_BLOCK_S = 0.4  # BS.1770's gating block: shorter audio has no loudness
CALIBRATION_S = 2.0  # the prompt's last seconds, where the codec's level is measured against the recording's
MAX_GAIN_DB = 24.0  # a near-silent continuation is not blown up into loud noise
PEAK_CEILING = 0.99  # loudness matching never pushes the continuation into clipping
MIN_SAMPLE_RATE = 4000  # Hz: below it a take holds nothing above 2 kHz (no piano's upper half) and the STFTs fail


@dataclass
class Recording:
    """Audio as the file holds it: float samples [C, S] at ``sample_rate``, and the file's subtype."""

    samples: torch.Tensor
    sample_rate: int
    subtype: str
    path: Path | None = None

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate

    @property
    def channels(self) -> int:
        return self.samples.shape[0]


def read_recording(path: str | Path) -> Recording:
    """Any file soundfile reads, in its own rate, channels and (for WAV output) subtype."""
    data, sample_rate, subtype = read_file(path, dtype_for={kind: "float64" for kind in EXACT_IN_FLOAT64})
    if sample_rate < MIN_SAMPLE_RATE:
        raise PianogenError(f"{path} is sampled at {sample_rate} Hz; a take needs at least {MIN_SAMPLE_RATE} Hz")
    subtype = WAV_SUBTYPE.get(subtype, subtype)
    return Recording(torch.from_numpy(np.ascontiguousarray(data.T)), sample_rate,
                     subtype if subtype in KEPT_SUBTYPES else "PCM_16", Path(path))


def write_recording(path: Path, recording: Recording) -> None:
    """WAV in the recording's subtype, atomically (temp file + rename). Integer formats are clipped to [-1, 1]:
    libsndfile would wrap an over-range float around instead."""
    data = recording.samples.cpu().numpy().T
    if recording.subtype not in ("FLOAT", "DOUBLE"):  # every integer format
        data = np.clip(data, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, data, recording.sample_rate, format="WAV", subtype=recording.subtype)
    atomic_write_bytes(path, buf.getvalue())


def prompt_window(duration: float, prompt_seconds: float, start: float | None = None, end: float | None = None
                  ) -> tuple[float, float, list[str]]:
    """The prompt's (start, end) in seconds of a ``duration``-second recording, and notes for the user.

    Negative times count from the end. No bound given: the last ``prompt_seconds``. One bound: a window
    of ``prompt_seconds`` from it (cut at the recording's edges). Both: exactly that window.
    """
    for flag, value in (("--from", start), ("--to", end)):
        if value is not None and not math.isfinite(value):
            raise PianogenError(f"{flag} must be a finite number of seconds, got {value}")

    def absolute(t: float) -> float:
        return duration + t if t < 0 else t

    if start is None and end is None:
        lo, hi = duration - prompt_seconds, duration
    elif start is None:
        hi = absolute(end)
        lo = hi - prompt_seconds
    elif end is None:
        lo = absolute(start)
        hi = min(lo + prompt_seconds, duration)
    else:
        lo, hi = absolute(start), absolute(end)
    if hi > duration + 1e-6 or lo >= hi or hi <= 0:
        asked = " ".join(f"{flag} {value:g}" for flag, value in (("--from", start), ("--to", end)) if value is not None)
        raise PianogenError(f"the prompt window {asked or f'of {prompt_seconds:g} s'} is [{lo:.2f}, {hi:.2f}] s, "
                            f"which is not inside the {duration:.2f} s recording")
    notes = []
    if lo < 0:
        notes.append(f"prompt is {hi:.2f} s, shorter than the {prompt_seconds} s asked: using all of it")
        lo = 0.0
    return lo, min(hi, duration), notes


def equal_power_crossfade(outgoing: torch.Tensor, incoming: torch.Tensor) -> torch.Tensor:
    """[C, F] + [C, F] -> [C, F]: cos/sin gains whose squares sum to 1, so uncorrelated signals keep
    their power through the join."""
    n = outgoing.shape[-1]
    phase = (torch.arange(n, dtype=torch.float64) + 0.5) / n * (math.pi / 2)
    return outgoing * torch.cos(phase).to(outgoing.dtype) + incoming * torch.sin(phase).to(incoming.dtype)


def loudness_lufs(samples: torch.Tensor, sample_rate: int) -> float | None:
    """BS.1770 integrated loudness of [C, S] in LUFS; None when it has none (shorter than one 0.4 s block,
    or silent below the -70 LUFS gate). More than 5 channels are measured as their mono mix."""
    if samples.shape[-1] < round(LOUDNESS_BLOCK_S * sample_rate):
        return None
    if samples.shape[0] > 5:
        samples = samples.mean(dim=0, keepdim=True)
    value = float(torchaudio.functional.loudness(samples.double(), sample_rate))
    return value if math.isfinite(value) else None


@dataclass
class Splice:
    """Where and how a continuation joins the original: the take plus what was measured for the report."""

    take: Recording
    prompt_lufs: float | None  # the whole prompt window
    prompt_end_lufs: float | None  # its last CALIBRATION_S
    rendering_lufs: float | None  # the codec's rendering of those seconds, whose level the gain corrects
    continuation_lufs: float | None  # before the gain
    gain_db: float
    crossfade_s: float


def splice(original: Recording, cut: int, prompt_start: int, generated: torch.Tensor, generated_rate: int,
           join: int, crossfade_s: float) -> Splice:
    """The take: ``original[:, :cut]`` then the continuation, at the original's rate and channels.

    ``generated`` [S'] (mono, ``generated_rate``) is the codec's rendering of the prompt followed by the
    continuation; the continuation starts at sample ``join`` of it, which lines up with sample ``cut`` of
    the original. The crossfade runs over the last ``crossfade_s`` before the cut, from the original to
    the codec's own rendering of those samples, so the continuation grows out of the sound it was
    sampled from. The gain brings the codec's rendering of the prompt window's last CALIBRATION_S (the same
    span of ``generated`` before ``join``) to their loudness in ``original``, but never makes the continuation
    louder than the whole window (``original[:, prompt_start:cut]``); where either has no loudness (silence, or
    a rendering shorter than that), the continuation's own loudness is matched to the whole window's instead.
    """
    rate, dtype = original.sample_rate, original.samples.dtype
    incoming = generated.detach().cpu().double()
    if generated_rate != rate:
        incoming = torchaudio.functional.resample(incoming, generated_rate, rate)
        join = round(join * rate / generated_rate)
    incoming = incoming.to(dtype).expand(original.channels, -1)
    prompt_lufs = loudness_lufs(original.samples[:, prompt_start:cut], rate)
    span = min(round(CALIBRATION_S * rate), cut - prompt_start)
    prompt_end_lufs = loudness_lufs(original.samples[:, cut - span:cut], rate)
    rendering_lufs = loudness_lufs(incoming[:, join - span:join], rate) if join >= span else None
    continuation_lufs = loudness_lufs(incoming[:, join:], rate)
    matched = prompt_lufs - continuation_lufs if prompt_lufs is not None and continuation_lufs is not None else None
    if prompt_end_lufs is not None and rendering_lufs is not None:
        gain_db = prompt_end_lufs - rendering_lufs  # the codec's level where the continuation starts
        if matched is not None:  # but never louder, as a whole, than the prompt
            gain_db = min(gain_db, matched)
    else:
        gain_db = matched if matched is not None else 0.0
    gain_db = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, gain_db))
    fade = max(0, min(round(crossfade_s * rate), cut, join))
    peak = float(incoming[:, join - fade:].abs().max()) if incoming.shape[-1] > join - fade else 0.0
    if peak > 0:
        gain_db = min(gain_db, 20 * math.log10(PEAK_CEILING / peak))
    incoming = incoming * 10 ** (gain_db / 20)
    joined = equal_power_crossfade(original.samples[:, cut - fade:cut], incoming[:, join - fade:join])
    samples = torch.cat([original.samples[:, :cut - fade], joined, incoming[:, join:]], dim=-1)
    take = Recording(samples.contiguous(), rate, original.subtype)
    return Splice(take, prompt_lufs, prompt_end_lufs, rendering_lufs, continuation_lufs, gain_db, fade / rate)
