"""Rate against distortion: the codec's level counts and Opus's bitrates on one kbps axis.

A codec at 5 kbps is only better or worse than Opus at some rate; the two curves on one pair of axes
(Mel L1 and note F1 against kbps) say at which. Opus's points sit at the rate its packets really used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Point:
    curve: str  # "codec" or "Opus"
    label: str  # the row's name in tables
    kbps: float  # codec: levels x log2 V x frame rate; Opus: measured from its packets
    mel_l1: float
    stft: float
    si_sdr: float
    note_f1: float | None = None  # against the input's transcription; None when not measured
    note_f1_midi: float | None = None  # against the MIDI notes played; None without MIDI
    note_f1_text: str = ""  # what a table prints in the note F1 column ("unavailable" when it could not)


def _f1(scores: Any) -> float | None:
    return scores["f1"] if isinstance(scores, dict) and "f1" in scores else None


def _point(curve: str, label: str, m: dict[str, Any]) -> Point:
    f1, midi = _f1(m.get("note_f1")), _f1(m.get("note_f1_midi"))
    text = "" if "note_f1" not in m else "unavailable" if f1 is None else f"{f1:.3f}"
    if midi is not None:
        text += f" (MIDI {midi:.3f})"
    return Point(curve, label, m["kbps"], m["mel_l1"], m["stft"], m["si_sdr"], f1, midi, text)


def rate_distortion_rows(result: dict[str, Any]) -> list[Point]:
    """Every level count of the codec, then every Opus bitrate, of an ``evaluate_codec`` result."""
    points = [_point("codec", f"codec, {k} level{'' if k == '1' else 's'}", m) for k, m in result["by_levels"].items()]
    if "unavailable" not in result["opus"]:
        points += [_point("Opus", f"Opus --bitrate {m['target_kbps']:g} ({m['mode']})", m)
                   for m in result["opus"].values()]
    return points


def rate_distortion_table(result: dict[str, Any]) -> list[str]:
    """Markdown: one row per point, sorted by curve then kbps."""
    points = sorted(rate_distortion_rows(result), key=lambda p: (p.curve != "codec", p.kbps))
    lines = ["| curve | point | kbps | Mel L1 (lower) | note F1 (higher) |", "|---|---|---|---|---|"]
    lines += [f"| {p.curve} | {p.label} | {p.kbps:.2f} | {p.mel_l1:.3f} | {p.note_f1_text or '—'} |" for p in points]
    if "unavailable" in result["opus"]:
        lines.append(f"| Opus | unavailable: {result['opus']['unavailable']} | | | |")
    return lines + [""] + _notes_footer(result.get("notes", {}))


def _notes_footer(notes: dict[str, Any]) -> list[str]:
    """What the note F1 column stands on: the transcriber, the notes it heard, its own F1 against the MIDI."""
    if "transcriber" not in notes:
        return [f"Note F1: {notes['unavailable']}", ""] if "unavailable" in notes else []
    line = (f"Note F1: `{notes['transcriber']}` heard {notes['input_notes']} notes in the input (onsets within "
            f"{notes['onset_tolerance'] * 1000:g} ms); each row is scored against them")
    if "input_note_f1_midi" in notes:
        line += (f", and in brackets against the {notes['midi_notes']} notes of the MIDI, where the input itself "
                 f"scores {notes['input_note_f1_midi']['f1']:.3f}")
    return [line + ".", ""]


def plot_rate_distortion(result: dict[str, Any], out: Path, title: str = "") -> None:
    """Mel L1 and note F1 (when measured) against kbps, the codec's level counts as one curve and Opus's
    bitrates as another; written atomically as a PNG."""
    from matplotlib.ticker import ScalarFormatter

    from pianogen.evaluation.plots import plt, save_figure

    points = rate_distortion_rows(result)
    with_notes = any(p.note_f1 is not None for p in points)
    fig, axes = plt.subplots(1, 2 if with_notes else 1, figsize=(11 if with_notes else 6, 4), squeeze=False)
    panels = [("Mel L1 (lower is better)", "mel_l1"), ("note F1 vs the input's notes (higher is better)", "note_f1")]
    for ax, (ylabel, field) in zip(axes[0], panels[: 1 + with_notes]):
        for curve, style in (("codec", "o-"), ("Opus", "s--")):
            by_kbps = {p.kbps: getattr(p, field) for p in points if p.curve == curve}  # "all" = its top count
            xy = sorted((k, v) for k, v in by_kbps.items() if v is not None)
            if xy:
                ax.plot(*zip(*xy), style, label=curve)
        ax.set(xlabel="kbps (Opus: measured from its packets)", ylabel=ylabel, xscale="log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 0.5, 1, 5, 10 rather than powers of ten
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "rate against distortion")
    save_figure(fig, out)


def write_rate_distortion(result: dict[str, Any], out_dir: Path, title: str = "") -> list[Path]:
    """``codec_eval.json``, ``rate_distortion.md`` and ``rate_distortion.png`` under ``out_dir``, atomically."""
    from pianogen.paths import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "codec_eval.json", out_dir / "rate_distortion.md", out_dir / "rate_distortion.png"]
    atomic_write_bytes(paths[0], (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(paths[1], "\n".join(rate_distortion_table(result)).encode())
    plot_rate_distortion(result, paths[2], title)
    return paths
