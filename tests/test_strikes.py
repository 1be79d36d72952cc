"""Struck or swelled: onset rises of synthetic tones whose envelopes are known."""

from __future__ import annotations

import math

import torch

from pianogen.evaluation import strikes
from pianogen.evaluation.notes import add_harmonics, midi_hz
from pianogen.interfaces import Note

SR = 16000
SECONDS = 3.0
T = torch.arange(round(SECONDS * SR), dtype=torch.float64) / SR


def tone(pitch: int, envelope: torch.Tensor) -> torch.Tensor:
    """Harmonics 1..8 of ``pitch`` (amplitude 1/h) under ``envelope`` [S]."""
    wav = torch.zeros_like(T)
    add_harmonics(wav, midi_hz(pitch), T, SR, partials=8, rolloff=1)
    return wav * envelope


def struck_at(onset: float, decay_s: float = 1.0) -> torch.Tensor:
    """A piano-like envelope: 0 before ``onset``, a 3 ms attack, then an exponential decay."""
    after = (T - onset).clamp_min(0)
    return torch.where(T < onset, 0.0, (after / 0.003).clamp_max(1) * torch.exp(-after / decay_s))


def rise(wav: torch.Tensor, onset: float, pitch: int) -> float:
    return strikes.onset_rises(wav.float(), SR, [Note(onset, onset + 0.5, pitch, 80)])[0]


def test_a_struck_note_rises_and_a_swell_of_the_same_note_does_not():
    assert rise(tone(64, struck_at(1.0)), 1.0, 64) > 40  # out of silence
    # the same note held, its loudness swelling by 6 dB over 400 ms (a raised cosine around the onset heard)
    swell = 0.5 + 0.5 * 0.5 * (1 - torch.cos(math.pi * ((T - 0.8) / 0.4).clamp(0, 1)))
    assert rise(tone(64, swell), 1.0, 64) < strikes.STRIKE_DB  # 3.9 dB of the 6 between the frames compared
    # a held chord whose partials waver by +-3 dB at 4 Hz, an onset heard at a crest
    tremolo = 10 ** (3 * torch.sin(2 * math.pi * 4 * (T - 0.9375)) / 20)
    chord = sum(tone(p, tremolo) for p in (60, 64, 67))
    assert max(rise(chord, 1.0, p) for p in (60, 64, 67)) < strikes.STRIKE_DB


def test_a_note_struck_again_while_it_still_sounds_is_struck():
    first, again = struck_at(0.2, decay_s=0.4), struck_at(1.5, decay_s=0.4)  # down ~28 dB by the second strike
    assert rise(tone(69, first + again), 1.5, 69) > strikes.STRIKE_DB
    # softly: the second strike at a tenth of the first (-20 dB), still 8 dB above what is left of it
    assert rise(tone(69, first + 0.1 * again), 1.5, 69) > strikes.STRIKE_DB


def test_a_new_note_under_a_louder_held_one_is_struck_in_its_own_partials():
    held = tone(72, torch.ones_like(T))  # C5 held at full level all along
    new = 0.3 * tone(73, struck_at(1.2))  # C#5 struck 10 dB softer, a semitone away
    mix = held + new
    assert rise(mix, 1.2, 73) > strikes.STRIKE_DB
    assert rise(mix, 1.2, 72) < 1.0  # the held note's own partials do not move


def test_struck_keeps_only_the_struck_notes_and_reads_times_from_the_offset():
    wav = (tone(60, struck_at(0.5)) + tone(66, 0.2 + 0.8 * (T / SECONDS))).float()  # C4 struck, F#4 swelling
    notes = [Note(-1.0, 0.5, 60, 80), Note(0.0, 1.0, 66, 80), Note(-1.2, -1.0, 60, 80)]  # times after 1.5 s
    kept = strikes.struck(wav, SR, notes, offset=1.5)
    assert kept == [notes[0]]  # at 0.5 s in the audio; the swell and the silence before the strike are not
    assert strikes.struck(wav, SR, [], offset=1.5) == []


def test_onsets_at_the_edges_of_the_audio_are_scored():
    wav = tone(64, struck_at(0.0)).float()
    rises = strikes.onset_rises(wav, SR, [Note(0.0, 0.5, 64, 80), Note(SECONDS - 0.01, SECONDS, 64, 80)])
    assert all(math.isfinite(r) for r in rises)
    assert rises[0] > 40 and -10 < rises[1] < 0  # a decaying tail: no rise
