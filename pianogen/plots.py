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
    ax.set(xlabel="seconds", ylabel="Mel bin", title=title)
    fig.colorbar(image, ax=ax, label="dB")
    save_figure(fig, out)
