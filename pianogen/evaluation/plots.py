"""Figures a run leaves: loss curves (the report's Figures 5 and 7) and Mel spectrograms (6, 8, 9)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt
import torch

from pianogen.paths import atomic_path


def save_figure(fig, out: Path) -> None:
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Train and validation loss (and per-level NLL) against optimizer steps."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            series[record["split"]].append((record["step"], record["loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    for split, points in series.items():
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if split != "train" else None, label=split)
    ax.set(xlabel="optimizer step", ylabel="loss", title="training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out)


def mel_axis_ticks(sample_rate: int, n_mels: int, min_gap: float = 4.5) -> tuple[list[float], list[str]]:
    """Where 16 kHz, 8 kHz and each C (C8 down to C1, with its Hz) sit on the y axis of a Mel image drawn
    with bin m over [m, m+1]: a musician reads pitch, not Mel bin numbers. torchaudio's default Mel scale
    (HTK, 0 Hz to Nyquist) puts bin m's centre at mel_max * (m + 1) / (n_mels + 1). The low octaves crowd
    together on a Mel axis: the ticks stop at the first one closer than ``min_gap`` bins to the one above."""
    import math

    def mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    top, positions, labels = mel(sample_rate / 2), [], []
    marks = [(16000.0, "16 kHz"), (8000.0, "8 kHz")]
    for octave in range(8, 0, -1):
        hz = 440.0 * 2 ** ((12 * (octave + 1) - 69) / 12)  # C of this octave: MIDI note 12 * (octave + 1)
        marks.append((hz, f"C{octave} {hz:.0f} Hz"))
    for hz, label in marks:
        y = mel(hz) / top * (n_mels + 1) - 0.5
        if y > n_mels + 0.5:
            continue
        if y < 0 or (positions and positions[0] - y < min_gap):
            break
        positions.insert(0, min(y, float(n_mels)))  # Nyquist itself sits at the top edge
        labels.insert(0, label)
    return positions, labels


def plot_mel(wav: torch.Tensor, sample_rate: int, out: Path, boundary_s: float | None = None,
             title: str = "") -> None:
    """Log-Mel spectrogram of wav[S] or [1, S]; a dashed line marks where the continuation starts."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=80)(
        wav.reshape(-1).float().cpu())
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    fig, ax = plt.subplots(figsize=(10, 3.5))
    seconds = wav.numel() / sample_rate
    image = ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, db.shape[0]),
                      vmin=float(db.max()) - 80, cmap="magma")
    if boundary_s is not None:
        ax.axvline(boundary_s, color="cyan", linestyle="--", linewidth=1.5, label="prompt | continuation")
        ax.legend(loc="upper right")
    ax.set(xlabel="seconds", ylabel="pitch (Mel scale)", title=title)
    ax.set_yticks(*mel_axis_ticks(sample_rate, db.shape[0]))
    fig.colorbar(image, ax=ax, label="dB")
    save_figure(fig, out)
