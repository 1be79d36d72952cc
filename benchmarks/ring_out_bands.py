"""How well a lone note's tail is predicted by carrying on its bands' decay lines, by band count (why ring_out.py
fades 24 bands): the Salamander test notes' 2-5 s fitted, their 5-13 s predicted.

    python benchmarks/ring_out_bands.py [--bands 1,8,24,64] [--notes 8]

For each note (mono, 16 kHz, the first 13 s): STFT levels (64 ms Hann, 16 ms hop) summed into N log-spaced bands
from 30 Hz to Nyquist; a least-squares line through each band's dB over 2-5 s (slopes clamped to [-40, 0] dB/s, as
ring_out.py does), carried on from its level over the last 0.5 s; the bands' predicted powers summed. Prints, per
band count, the predicted and true slope of the overall level over 5-13 s and the mean absolute error of the
predicted level (dB), averaged over the notes.
"""

import argparse

import torch
from pianogen_data.salamander_fetch import salamander_splits

from pianogen import load_audio
from pianogen.generation.prompt_end import STEEPEST_DECAY_DB_PER_S, line_slope
from pianogen.generation.ring_out import band_of_bins

SR, N_FFT, HOP = 16000, 1024, 256
FIT, AFTER = (2.0, 5.0), (5.0, 13.0)


def band_levels(wav: torch.Tensor, bands: int) -> torch.Tensor:
    """[bands, T] levels in dB, in ring_out.py's bands (``band_of_bins``)."""
    power = torch.stft(wav, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2)
    summed = torch.zeros(bands, power.shape[1]).index_add_(0, band_of_bins(SR, bands), power)
    return 10 * torch.log10(summed + 1e-10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", default="1,8,24,64")
    parser.add_argument("--notes", type=int, default=8)
    args = parser.parse_args()
    notes = salamander_splits()["test"][:args.notes]
    for bands in (int(b) for b in args.bands.split(",")):
        rows = []
        for path in notes:
            db = band_levels(load_audio(path, SR).mean(0)[:round(AFTER[1] * SR)], bands)
            t = torch.arange(db.shape[1]) * HOP / SR
            fit, after = (t >= FIT[0]) & (t < FIT[1]), (t >= AFTER[0]) & (t < AFTER[1])
            slopes = line_slope(t[fit], db[:, fit]).clamp(STEEPEST_DECAY_DB_PER_S, 0.0)
            start = db[:, fit][:, -round(0.5 * SR / HOP):].mean(dim=1)
            tc = t[after] - AFTER[0]
            predicted = 10 * torch.log10(torch.pow(10, (start[:, None] + slopes[:, None] * tc) / 10).sum(dim=0))
            true = 10 * torch.log10(torch.pow(10, db[:, after] / 10).sum(dim=0))
            rows.append((float(line_slope(tc, predicted)), float(line_slope(tc, true)),
                         float((predicted - true).abs().mean())))
        mean = [sum(r[i] for r in rows) / len(rows) for i in range(3)]
        print(f"{bands:3d} bands: predicted slope {mean[0]:.2f} dB/s, true {mean[1]:.2f}; "
              f"mean |error| {mean[2]:.1f} dB ({len(rows)} notes)")


if __name__ == "__main__":
    main()
