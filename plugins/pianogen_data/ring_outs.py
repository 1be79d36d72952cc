"""Ring-outs: a pianist striking a note, a chord or a short figure and letting it ring until it has died away.

Why a corpus of them: the composed pieces (composer.py) never stop: a note decays under the next one, and no 5 s
window of them is a lone sound fading. The piano model trained on them, with the single Salamander notes at 18
pitches beside, read the quiet tail of a lone note at another pitch as the rest before loud chords: given the
true tail of a Salamander test note, it gave 9.6 % of the first second's level-1 probability to codes 20 dB
louder than the tail (1.1 % after the notes it trained on); retrained with ring-outs (and its own codes), 0.8 %
(`benchmarks/loud_codes.py`; RESULTS.md, "Own codes and ring-outs"). Ring-outs put every key of the piano, at
every loudness, in that situation, played by the same sampled grand (velocity layer 10, the test notes' layer,
left out as ever).

A gesture: one note (45 %), a chord of 2-4 notes within about an octave and a half (35 %), or a figure of 2-5
notes ending on a held one (20 %); somewhere on the keyboard (centred on E4, A0-C8), velocity 15-115. The key is
held 8-22 s (the recording decays naturally, as a Salamander note does), with the sustain pedal down through a
third of them; then released, and 0.3-2 s of quiet before the next gesture.
"""

from __future__ import annotations

import math

import numpy as np

from pianogen.errors import PianogenError
from pianogen.interfaces import Note, Performance

LOWEST, HIGHEST = 21, 108  # A0, C8
HOLD_SECONDS = (8.0, 22.0)  # long enough for most notes to die away, as a lone Salamander note does
GAP_SECONDS = (0.3, 2.0)


def _pitch(rng: np.random.Generator) -> int:
    return int(np.clip(round(rng.normal(64, 14)), LOWEST, HIGHEST))


def _gesture(rng: np.random.Generator, start: float) -> tuple[list[Note], float]:
    """The notes of one gesture from ``start`` and the time its keys are released."""
    velocity = int(rng.integers(15, 116))
    hold = float(rng.uniform(*HOLD_SECONDS))
    kind = rng.choice(["note", "chord", "figure"], p=[0.45, 0.35, 0.20])
    if kind == "note":
        return [Note(start, start + hold, _pitch(rng), velocity)], start + hold
    if kind == "chord":
        root = _pitch(rng)
        pitches = {root} | {int(np.clip(root + rng.integers(1, 19), LOWEST, HIGHEST))
                            for _ in range(int(rng.integers(1, 4)))}
        spread = float(rng.uniform(0.0, 0.03))  # the hand's fingers do not land at once
        return [Note(start + i * spread, start + hold, p, int(np.clip(velocity + rng.integers(-8, 9), 1, 127)))
                for i, p in enumerate(sorted(pitches))], start + hold
    notes, t, pitch = [], start, _pitch(rng)
    for _ in range(int(rng.integers(2, 6)) - 1):
        step = float(rng.uniform(0.12, 0.45))
        notes.append(Note(t, t + step * 0.9, pitch, int(np.clip(velocity + rng.integers(-12, 13), 1, 127))))
        t, pitch = t + step, int(np.clip(pitch + rng.integers(-7, 8), LOWEST, HIGHEST))
    notes.append(Note(t, t + hold, pitch, velocity))
    return notes, t + hold


def ring_outs(seed: int, seconds: float) -> Performance:
    """Gestures each let ring to silence, about ``seconds`` long in all (the last gesture may run past it),
    deterministic in ``seed``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PianogenError(f"ring-out seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise PianogenError(f"ring-out seconds must be a positive number, got {seconds!r}")
    rng = np.random.default_rng([int(seed), 41])
    notes: list[Note] = []
    sustain: list[tuple[float, int]] = []
    t, gestures = 0.0, 0
    while t < seconds:
        played, released = _gesture(rng, t)
        if rng.random() < 1 / 3:
            sustain += [(max(0.0, t - 0.05), 127), (released, 0)]
        notes += played
        gestures += 1
        t = released + float(rng.uniform(*GAP_SECONDS))
    info = {"title": "Ring-outs", "gestures": gestures, "seed": int(seed), "composer": "pianogen_data.ring_outs"}
    return Performance(notes, sustain, [], info)
