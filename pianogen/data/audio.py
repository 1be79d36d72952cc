"""Audio file I/O: soundfile in, mono float32 at the codec's rate out; atomic 16-bit WAV writes.

soundfile (libsndfile) reads wav/flac/ogg/mp3 without torchcodec, which ``torchaudio.load``
now needs. Every unreadable file becomes a PianogenError that names it.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from pianogen.errors import PianogenError
from pianogen.paths import atomic_write_bytes

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def _wav_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file declares more data than it holds (libsndfile silently reads less)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return False
            cid, n = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                return n != 0xFFFFFFFF and f.tell() + n > size  # 0xFFFFFFFF: streamed, size unknown
            f.seek(n + (n & 1), io.SEEK_CUR)


def read_file(path: str | Path, dtype_for: dict[str, str] | None = None) -> tuple[np.ndarray, int, str]:
    """Every sample of ``path`` -> (float array [S, C], sample rate, libsndfile subtype); float32 unless
    ``dtype_for[subtype]`` asks for another. Unreadable, empty or truncated files are a PianogenError."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            dtype = (dtype_for or {}).get(f.subtype, "float32")
            data, sr, subtype = f.read(dtype=dtype, always_2d=True), f.samplerate, f.subtype
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise PianogenError(f"cannot read audio file {path}: {err}") from None
    if len(data) == 0:
        raise PianogenError(f"audio file {path} is empty")
    broken = ~np.isfinite(data).all(axis=1)  # float WAV/FLAC can hold NaN and inf; they would poison every frame
    if broken.any():
        raise PianogenError(f"audio file {path} has {int(broken.sum())} NaN or infinite samples (the first at "
                            f"{int(broken.argmax()) / sr:.3f} s); repair or re-export it")
    if path.suffix.lower() == ".wav" and _wav_truncated(path):
        raise PianogenError(f"audio file {path} is truncated (its header promises more samples)")
    return data, sr, subtype


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read ``path`` -> FloatTensor[1, S] at ``sample_rate``: channels averaged, resampled with torchaudio."""
    data, sr, _ = read_file(path)
    wav = torch.from_numpy(data.mean(axis=1))[None]
    if sr != sample_rate:
        wav = torchaudio.functional.resample(wav, sr, sample_rate)
    return wav.to(torch.float32).contiguous()


def audio_seconds(path: str | Path) -> float:
    """Duration from the file header, 0.0 when unreadable (progress totals only)."""
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0


def load_or_skip(path: str | Path, sample_rate: int, strict: bool = False) -> torch.Tensor | None:
    """``load_audio``, but an unreadable file gives a warning and None unless ``strict``."""
    try:
        return load_audio(path, sample_rate)
    except PianogenError as err:
        if strict:
            raise
        warnings.warn(f"skipping {err} (set data.strict=true to stop instead)", stacklevel=2)
        return None


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write wav [S] or [C, S] (float, clipped to [-1, 1]) as 16-bit PCM WAV via temp file + rename."""
    data = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise PianogenError(f"save_audio wants [S] or [C, S] audio, got shape {tuple(data.shape)}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(data.T, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    atomic_write_bytes(Path(path), buf.getvalue())
