"""Judging a codec: reconstruction by number of levels, codebook health, and Opus as an anchor.

Every codec number is printed beside Opus on the same audio with the same metrics: opusenc as its users
run it, from 48 kHz, at 6, 8, 12 and 16 kbps, each row with the bitrate its packets really use
(``pianogen.evaluation.opus``). ``pianogen.evaluation.codec_notes`` adds whether the notes survive (note F1) and
``pianogen.evaluation.rate_distortion`` lays both on one rate axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from pianogen.evaluation.code_stability import steady_notes, steady_notes_line
from pianogen.evaluation.opus import OPUS_KBPS
from pianogen.interfaces import Codec, Note
from pianogen.progress import progress_bar
from pianogen.training.metrics import reconstruction_metrics

LOW_USAGE = 0.25  # a level that uses fewer of its codes than this wastes most of its bits: warn
DEFAULT_LEVELS: tuple[int | str, ...] = (1, 2, 4, 8, "all")
MIN_CLIP_SECONDS = 0.25  # shorter clips cannot be scored (frames, STFT windows, onsets)


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


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}


@torch.no_grad()
def evaluate_codec(codec: Codec | None, wavs: Iterable[torch.Tensor], levels: Sequence[int | str] = DEFAULT_LEVELS,
                   opus: bool = True, *, opus_kbps: Sequence[float] = OPUS_KBPS, opus_mode: str = "vbr",
                   notes: bool = False, transcriber: str = "basic_pitch",
                   midi: Sequence[list[Note] | None] | None = None, progress: bool = False,
                   sample_rate: int | None = None) -> dict[str, Any]:
    """Encode each wav [1, S] (or [S]) once; per level count k: Mel L1 / MR-STFT / SI-SDR of the first k
    levels and their bitrate; codebook health over all frames; the same metrics for Opus (opusenc from 48 kHz)
    at each of ``opus_kbps`` with the bitrate it really used. With ``notes``, every row also gets the note F1
    of its audio against the input's transcription (``pianogen.evaluation.codec_notes``), and against ``midi[i]``, the
    notes played in clip i, where given. ``codec`` None scores Opus alone on wavs at ``sample_rate``.

    Returns {"seconds", "by_levels": {str(k): {..., "kbps"}}, "codebooks": [per level: codes used, perplexity,
    the fraction of frames repeating the previous frame's code], "steady_notes" (``code_stability``), "warnings",
    "opus": {"unavailable": reason} or {"6 kbps": {"target_kbps", "kbps", "mode", metrics}, ...},
    and with ``notes`` "notes": {"transcriber", "input_notes", ...} or {"unavailable": reason}}.
    """
    from pianogen.evaluation.codec_notes import NoteTally
    from pianogen.evaluation.notes import load_transcriber
    from pianogen.evaluation.opus import opus_roundtrip, opus_unavailable_reason

    wavs = list(wavs)
    sample_rate = codec.sample_rate if codec is not None else sample_rate
    device = next(codec.parameters()).device if codec is not None else torch.device("cpu")
    n_levels, codebook_size = (codec.n_levels, codec.codebook_size) if codec is not None else (0, 1)
    counts = {str(k): n_levels if k == "all" else int(k) for k in levels}
    counts = {key: k for key, k in counts.items() if 1 <= k <= n_levels}
    reason = opus_unavailable_reason() if opus else "not asked for"
    targets = {} if reason else {f"{kbps:g} kbps": float(kbps) for kbps in opus_kbps}
    rows: dict[str, list[dict[str, float]]] = {key: [] for key in [*counts, *targets]}
    histogram = torch.zeros(n_levels, codebook_size, dtype=torch.float64)
    repeats, transitions = torch.zeros(n_levels, dtype=torch.float64), 0  # frames whose code is the previous one's
    seconds, real_bps = 0.0, {label: [] for label in targets}
    heard, notes_reason = load_transcriber(transcriber) if notes else (None, None)
    tally = NoteTally(heard, sample_rate) if heard is not None else None
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task("codec eval", total=len(wavs))
        for i, wav in enumerate(wavs):
            x = wav.reshape(1, 1, -1).to(device).float()
            if tally is not None:
                tally.add_input(x[0, 0], midi[i] if midi is not None else None)
            codes = codec.encode(x) if codec is not None else None
            for k in range(n_levels):
                histogram[k] += torch.bincount(codes[:, k].reshape(-1).cpu(), minlength=codebook_size).double()
            if codes is not None:
                repeats += (codes[:, :, 1:] == codes[:, :, :-1]).sum(dim=(0, 2)).double().cpu()
                transitions += codes.shape[0] * max(0, codes.shape[2] - 1)
            for key, k in counts.items():
                est = codec.decode(codes[:, :k])[..., : x.shape[-1]].float()
                rows[key].append(reconstruction_metrics(x, est, sample_rate))
                if tally is not None:
                    tally.add(key, est[0, 0])
            for label, kbps in targets.items():
                est, real = opus_roundtrip(x[0, 0], sample_rate, kbps, mode=opus_mode)
                rows[label].append(reconstruction_metrics(x[0, 0], est, sample_rate))
                real_bps[label].append(real)
                if tally is not None:
                    tally.add(label, est)
            seconds += x.shape[-1] / sample_rate
            bar.advance(task)
    health = [{**_health_row(h), "repeat_fraction": float(r) / max(1, transitions)} for h, r in zip(histogram, repeats)]
    by_levels = {key: {**_mean(rows[key]), "kbps": bitrate(codec, k) / 1000} for key, k in counts.items()}
    anchor: dict[str, Any] = {"unavailable": reason} if reason else {
        label: {**_mean(rows[label]), "target_kbps": kbps, "kbps": sum(real_bps[label]) / len(real_bps[label]) / 1000,
                "mode": opus_mode} for label, kbps in targets.items()}
    result = {"seconds": seconds, "by_levels": by_levels, "codebooks": health,
              "warnings": usage_warnings(health, codebook_size), "opus": anchor}
    if notes:
        _add_note_scores(result, tally, notes_reason)
    if codec is not None:
        result["steady_notes"] = steady_notes(codec)
    return result


def _add_note_scores(result: dict[str, Any], tally: Any, reason: str | None) -> None:
    """Every level count's and Opus row's ``note_f1`` (and ``note_f1_midi``), or the reason there are none."""
    rows = [*result["by_levels"].items(), *(() if "unavailable" in result["opus"] else result["opus"].items())]
    if tally is None:
        result["warnings"].append(f"no note F1: {reason}")
        result["notes"] = {"unavailable": reason}
        for _, row in rows:
            row["note_f1"] = {"unavailable": reason}
        return
    result["notes"] = tally.summary()
    for label, row in rows:
        row.update(tally.scores(label))


def markdown_tables(result: dict[str, Any], codebook_size: int) -> list[str]:
    """The codec table (levels, kbps, metrics, with the Opus rows under it) and the codebook health table."""
    from pianogen.evaluation.rate_distortion import rate_distortion_rows

    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    points = rate_distortion_rows(result)
    with_notes = any(p.note_f1 is not None for p in points)
    notes_head = " note F1 (higher) |" if with_notes else ""
    lines = [f"| | kbps | Mel L1 (lower) | MR-STFT (lower) | SI-SDR dB (higher) |{notes_head}",
             "|---|---|---|---|---|" + ("---|" if with_notes else "")]
    lines += ["| " + " | ".join(fmt(v) for v in (p.label, p.kbps, p.mel_l1, p.stft, p.si_sdr)) + " |"
              + (f" {p.note_f1_text} |" if with_notes else "") for p in points]
    if "unavailable" in result["opus"]:
        lines.append(f"| Opus: unavailable: {result['opus']['unavailable']} | | | | |" + (" |" if with_notes else ""))
    lines.append("")
    held = all("repeat_fraction" in h for h in result["codebooks"])  # results saved before it lack the column
    lines += [f"| level | codes used (of {codebook_size}) | used % | perplexity |"
              + (" same code as the previous frame |" if held else ""), "|---|---|---|---|" + ("---|" if held else ""),
              *(f"| {k + 1} | {h['codes_used']} | {h['used_fraction']:.0%} | {h['perplexity']:.1f} |"
                + (f" {h['repeat_fraction']:.1%} |" if held else "") for k, h in enumerate(result["codebooks"])), ""]
    if "steady_notes" in result:
        lines += [steady_notes_line(result["steady_notes"]), ""]
    lines += [f"**Warning:** {w}" for w in result["warnings"]]
    return lines + ([""] if result["warnings"] else [])


def recipe_audio(recipe: Any, split: str, sample_rate: int, seconds: float, pieces: int) -> list[torch.Tensor]:
    """The first ``seconds`` (0 = all) of up to ``pieces`` pieces of the recipe's ``split``, as [S] tensors."""
    return [clip(path, sample_rate, seconds) for path in recipe_paths(recipe, split, pieces)]


def recipe_paths(recipe: Any, split: str, pieces: int) -> list[Any]:
    """The audio files of up to ``pieces`` pieces of the recipe's ``split``."""
    from pianogen.data.sources import open_source
    from pianogen.errors import PianogenError

    chosen = [p.path for p in open_source(recipe.data).pieces() if p.split == split][:pieces]
    if not chosen:
        raise PianogenError(f"data source '{recipe.data.source}' has no '{split}' pieces")
    return chosen


def clip(path: Any, sample_rate: int, seconds: float) -> torch.Tensor:
    """The first ``seconds`` (0 = all) of an audio file at ``sample_rate``, as [S]."""
    from pianogen.data.audio import load_audio
    from pianogen.errors import PianogenError

    wav = load_audio(path, sample_rate)[0]
    wav = wav[: round(seconds * sample_rate)] if seconds > 0 else wav
    if wav.numel() < MIN_CLIP_SECONDS * sample_rate:  # a codec's frame and the STFT metrics need some audio
        raise PianogenError(f"{path}: {wav.numel() / sample_rate:.3g} s of audio; codec evaluation needs at least "
                            f"{MIN_CLIP_SECONDS} s")
    return wav
