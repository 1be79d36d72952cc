"""Struck or swelled: how sharply each heard note starts, so that a held wash is not counted as playing.

A transcriber reports an onset wherever a pitch's energy comes up, struck or not: a continuation that holds the
prompt's chord and lets its partials waver gets as many "notes" a second as a pianist playing (the built-in
`piano` run: 7.2-7.7 notes/s on the other piano against 6.6 true, while its Mel images show a shimmering sustain).
A piano note is struck: its own partials jump within a few tens of milliseconds. So each note's *onset rise* is
the power of its partials (harmonics 1..``PARTIALS``, each within a quarter tone) just after the onset over just
before it, in dB, and a note is *struck* when the rise reaches ``STRIKE_DB``.

Measured on four takes of the other piano (rendered by fluidsynth; the heard notes after 5 s): the true
continuation's median rise 9-21 dB, its codec resynthesis 5-26 dB, the built-in run's continuations 3-5 dB
(RESULTS.md, "Struck notes").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pianogen.data.midi import midi_hz
from pianogen.interfaces import Note

STRIKE_DB = 6.0  # a note whose partials at least quadruple in power (x2 in amplitude) at its onset is struck
PARTIALS = 6  # harmonics 1..6 of the note: the low ones carry the strike; higher ones blur into neighbours
QUARTER_TONE = 2 ** (1 / 24) - 1  # a partial's band: within a quarter tone of h x f0 (neighbours a semitone off)
WINDOW_SECONDS = 0.064  # STFT window (1024 samples at 16 kHz): 16 Hz bins; partials above C4 are a semitone apart
HOP_SECONDS = 0.005
# frames centred here, relative to the onset heard. Before: wholly before the onset (a transcriber's onset may be
# a frame, 12 ms, late; the window reaches half its length past its centre). After: the strike's first 80 ms.
BEFORE = (-0.150, -0.060)
AFTER = (0.010, 0.080)
FLOOR = 1e-9  # powers below this fraction of the loudest bin count as silence, so a rise out of silence is finite


def onset_rises(wav: torch.Tensor, sample_rate: int, notes: Sequence[Note]) -> list[float]:
    """Each note's onset rise in dB (onsets in seconds from the start of ``wav``, mono FloatTensor[S]): 10 log10
    of the largest power of its partials in the frames just after the onset over their mean just before it."""
    if not notes:
        return []
    x = wav.reshape(-1).float()
    n_fft = 1 << max(1, round(WINDOW_SECONDS * sample_rate - 1).bit_length())
    hop = max(1, round(HOP_SECONDS * sample_rate))
    lead = round(-BEFORE[0] * sample_rate) + n_fft // 2  # before the audio began: silence (a note struck at 0)
    x = torch.nn.functional.pad(x, (lead, max(0, n_fft - x.numel())))
    power = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)  # [F, T]
    power = power.clamp_min(FLOOR * float(power.max()) + 1e-30)
    bin_hz = sample_rate / n_fft
    freqs = torch.arange(power.shape[0]) * bin_hz
    frames = power.shape[1]

    def frame(t: float) -> int:  # frame k is centred at k * hop samples of the padded audio (center=True)
        return min(frames - 1, max(0, round((t * sample_rate + lead) / hop)))

    rises = []
    for note in notes:
        f0 = midi_hz(note.pitch)
        band = torch.zeros(power.shape[0], dtype=torch.bool)
        for h in range(1, PARTIALS + 1):
            if h * f0 < sample_rate / 2:
                band |= (freqs - h * f0).abs() <= max(QUARTER_TONE * h * f0, bin_hz)
        energy = power[band].sum(dim=0)  # [T]
        before = energy[frame(note.onset + BEFORE[0]):frame(note.onset + BEFORE[1]) + 1].mean()
        after = energy[frame(note.onset + AFTER[0]):frame(note.onset + AFTER[1]) + 1].max()
        rises.append(10 * float(torch.log10(after / before)))
    return rises


def struck(wav: torch.Tensor, sample_rate: int, notes: Sequence[Note], offset: float = 0.0) -> list[Note]:
    """The notes of ``notes`` whose onset rise reaches STRIKE_DB. ``offset``: where time 0 of the notes lies in
    ``wav``, in seconds (a continuation's notes, timed from the prompt's end, in prompt + continuation audio)."""
    shifted = [Note(n.onset + offset, n.offset + offset, n.pitch, n.velocity) for n in notes]
    return [n for n, rise in zip(notes, onset_rises(wav, sample_rate, shifted)) if rise >= STRIKE_DB]
