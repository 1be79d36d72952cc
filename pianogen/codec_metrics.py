"""Judging a codec: reconstruction by number of levels, codebook health, and Opus as an anchor.

Every codec number is printed beside Opus at the codec's own bitrate (levels x log2 V x frame
rate) and at twice it, on the same audio with the same metrics, through libsndfile's Ogg/Opus
encoder. libsndfile sets Opus's bitrate with a "compression level" mapped linearly onto
6..256 kbps per channel; we report the bitrate of the Opus packets the file really holds (the Ogg
container, about 2 kbps more on a 4 s clip, is left out, as the codec's bitrate leaves out any
file format). Opus cannot go below 6 kbps, so a lower target is coded at 6 kbps and says so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from pianogen.interfaces import Codec
from pianogen.metrics import reconstruction_metrics

LOW_USAGE = 0.25  # a level that uses fewer of its codes than this wastes most of its bits: warn
OPUS_MIN_BPS, OPUS_MAX_BPS = 6000.0, 256000.0  # libsndfile's Opus range (per channel)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the sample rates an Opus encoder accepts
DEFAULT_LEVELS: tuple[int | str, ...] = (1, 2, 4, 8, "all")


def bitrate(codec: Codec, levels: int) -> float:
    """Bits per second of the first ``levels`` levels: levels x log2(V) x frame rate."""
    return levels * math.log2(codec.codebook_size) * codec.frame_rate


def codebook_health(codes: torch.Tensor, codebook_size: int) -> list[dict[str, float]]:
    """Per level of codes LongTensor[B, K, T]: codes used (count and fraction of V) and perplexity
    (exp of the entropy of the code histogram; V when all codes are equally used, 1 for one code)."""
    health = []
    for level in codes.transpose(0, 1).reshape(codes.shape[1], -1):
        counts = torch.bincount(level.cpu(), minlength=codebook_size).double()
        health.append(_health_row(counts))
    return health


def _health_row(counts: torch.Tensor) -> dict[str, float]:
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    used = int((counts > 0).sum())
    return {"codes_used": used, "used_fraction": used / counts.numel(), "perplexity": math.exp(entropy)}


def usage_warnings(health: Sequence[dict[str, float]], codebook_size: int) -> list[str]:
    """One line per level that uses under LOW_USAGE of its codes."""
    return [f"level {k + 1} uses {h['codes_used']} of {codebook_size} codes ({h['used_fraction']:.0%} < "
            f"{LOW_USAGE:.0%}): most of its bits carry nothing" for k, h in enumerate(health)
            if h["used_fraction"] < LOW_USAGE]


def opus_unavailable_reason() -> str | None:
    """None when soundfile's libsndfile can write Ogg/Opus, else why not."""
    try:
        import soundfile as sf
    except ImportError as err:  # soundfile is a dependency, but its C library may be missing
        return f"soundfile unavailable ({err})"
    if "OPUS" not in sf.available_subtypes("OGG"):
        return f"libsndfile {sf.__libsndfile_version__} was built without Opus"
    return None


def opus_roundtrip(wav: torch.Tensor, sample_rate: int, target_bps: float) -> tuple[torch.Tensor, float]:
    """wav [S] through Opus at about ``target_bps`` -> (decoded [S], the real bits per second of its packets)."""
    import soundfile as sf
    import torchaudio.functional as AF

    rate = sample_rate if sample_rate in OPUS_RATES else 48000
    x = wav if rate == sample_rate else AF.resample(wav, sample_rate, rate)
    level = 1.0 - (min(max(target_bps, OPUS_MIN_BPS), OPUS_MAX_BPS) - OPUS_MIN_BPS) / (OPUS_MAX_BPS - OPUS_MIN_BPS)
    buf = io.BytesIO()
    sf.write(buf, x.detach().cpu().numpy().astype(np.float32), rate, format="OGG", subtype="OPUS",
             compression_level=level)
    real_bps = opus_packet_bytes(buf.getvalue()) * 8 / (x.numel() / rate)
    buf.seek(0)
    y = torch.from_numpy(sf.read(buf, dtype="float32")[0])
    if rate != sample_rate:
        y = AF.resample(y, rate, sample_rate)
    y = torch.nn.functional.pad(y[: wav.numel()], (0, max(0, wav.numel() - y.numel())))
    return y.to(wav.device), real_bps


def opus_packet_bytes(ogg: bytes) -> int:
    """Bytes of the audio packets of an Ogg/Opus stream: every packet after OpusHead and OpusTags."""
    packets, current, pos = [], 0, 0
    while pos < len(ogg):
        if ogg[pos:pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        lacing = ogg[pos + 27:pos + 27 + ogg[pos + 26]]  # segment sizes; a packet ends at a size < 255
        for size in lacing:
            current += size
            if size < 255:
                packets.append(current)
                current = 0
        pos += 27 + len(lacing) + sum(lacing)
    return sum(packets[2:])


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}


@torch.no_grad()
def evaluate_codec(codec: Codec, wavs: Iterable[torch.Tensor], levels: Sequence[int | str] = DEFAULT_LEVELS,
                   opus: bool = True) -> dict[str, Any]:
    """Encode each wav [1, S] (or [S]) once; per level count k: Mel L1 / MR-STFT / SI-SDR of the first k
    levels and their bitrate; codebook health over all frames; Opus at the full bitrate and twice it.

    Returns {"seconds", "by_levels": {str(k): {..., "kbps"}}, "codebooks": [per level], "warnings",
    "opus": {"unavailable": reason} or {label: {"target_kbps", "kbps", metrics}}}.
    """
    device = next(codec.parameters()).device
    counts = {str(k): codec.n_levels if k == "all" else int(k) for k in levels}
    counts = {key: k for key, k in counts.items() if 1 <= k <= codec.n_levels}
    full = bitrate(codec, codec.n_levels)
    reason = opus_unavailable_reason() if opus else "not asked for"
    targets = {} if reason else {"codec bitrate": full, "2x codec bitrate": 2 * full}
    rows: dict[str, list[dict[str, float]]] = {key: [] for key in [*counts, *targets]}
    histogram = torch.zeros(codec.n_levels, codec.codebook_size, dtype=torch.float64)
    seconds, real_bps = 0.0, {label: [] for label in targets}
    for wav in wavs:
        x = wav.reshape(1, 1, -1).to(device).float()
        codes = codec.encode(x)
        for k in range(codec.n_levels):
            histogram[k] += torch.bincount(codes[:, k].reshape(-1).cpu(), minlength=codec.codebook_size).double()
        for key, k in counts.items():
            est = codec.decode(codes[:, :k])[..., : x.shape[-1]].float()
            rows[key].append(reconstruction_metrics(x, est, codec.sample_rate))
        for label, bps in targets.items():
            est, real = opus_roundtrip(x[0, 0], codec.sample_rate, bps)
            rows[label].append(reconstruction_metrics(x[0, 0], est, codec.sample_rate))
            real_bps[label].append(real)
        seconds += x.shape[-1] / codec.sample_rate
    health = [_health_row(h) for h in histogram]
    by_levels = {key: {**_mean(rows[key]), "kbps": bitrate(codec, k) / 1000} for key, k in counts.items()}
    anchor: dict[str, Any] = {"unavailable": reason} if reason else {
        label: {**_mean(rows[label]), "target_kbps": max(bps, OPUS_MIN_BPS) / 1000,
                "kbps": sum(real_bps[label]) / max(len(real_bps[label]), 1) / 1000}
        for label, bps in targets.items()}
    return {"seconds": seconds, "by_levels": by_levels, "codebooks": health,
            "warnings": usage_warnings(health, codec.codebook_size), "opus": anchor}


def markdown_tables(result: dict[str, Any], codebook_size: int) -> list[str]:
    """The codec table (levels, kbps, metrics, with the Opus rows under it) and the codebook health table."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [[f"codec, {k} levels", m["kbps"], m["mel_l1"], m["stft"], m["si_sdr"]]
            for k, m in result["by_levels"].items()]
    opus = result["opus"]
    if "unavailable" in opus:
        rows.append(["Opus", "unavailable", opus["unavailable"], "", ""])
    else:
        rows += [[f"Opus at {label} ({m['target_kbps']:.3g} kbps asked)", m["kbps"], m["mel_l1"], m["stft"],
                  m["si_sdr"]] for label, m in opus.items()]
    lines = ["| | kbps | Mel L1 (lower) | MR-STFT (lower) | SI-SDR dB (higher) |", "|---|---|---|---|---|",
             *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows), ""]
    lines += [f"| level | codes used (of {codebook_size}) | used % | perplexity |", "|---|---|---|---|",
              *(f"| {k + 1} | {h['codes_used']} | {h['used_fraction']:.0%} | {h['perplexity']:.1f} |"
                for k, h in enumerate(result["codebooks"])), ""]
    lines += [f"**Warning:** {w}" for w in result["warnings"]]
    return lines + ([""] if result["warnings"] else [])


def recipe_audio(recipe: Any, split: str, sample_rate: int, seconds: float, pieces: int) -> list[torch.Tensor]:
    """The first ``seconds`` (0 = all) of up to ``pieces`` pieces of the recipe's ``split``, as [S] tensors."""
    from pianogen.data.sources import open_source
    from pianogen.errors import PianogenError

    chosen = [p.path for p in open_source(recipe.data).pieces() if p.split == split][:pieces]
    if not chosen:
        raise PianogenError(f"data source '{recipe.data.source}' has no '{split}' pieces")
    return [clip(path, sample_rate, seconds) for path in chosen]


def clip(path: Any, sample_rate: int, seconds: float) -> torch.Tensor:
    """The first ``seconds`` (0 = all) of an audio file at ``sample_rate``, as [S]."""
    from pianogen.data.audio import load_audio

    wav = load_audio(path, sample_rate)[0]
    return wav[: round(seconds * sample_rate)] if seconds > 0 else wav
