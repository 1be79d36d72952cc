"""Note-level metrics on constructed note lists, and the floors on rendered audio (fluidsynth + basic_pitch)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from pianogen_data.fluidsynth import render_notes as render_fluidsynth

from pianogen.errors import PianogenError
from pianogen.evaluation import drift, notes
from pianogen.interfaces import Note

C_MAJOR = [0, 2, 4, 5, 7, 9, 11]


def piece(scale: list[int], seconds: float = 6.0, seed: int = 0, transpose: int = 0) -> list[Note]:
    """A seeded melody with a bass: eighth notes from ``scale`` over three octaves, a tonic or dominant bass
    note every second (so the key is clear)."""
    rng = np.random.default_rng(seed)
    out, t = [], 0.1
    while t < seconds - 0.3:
        pitch = 60 + int(rng.choice(scale)) + 12 * int(rng.integers(-1, 2))
        out.append(Note(t, t + 0.3, pitch + transpose, int(rng.integers(60, 100))))
        t += 0.25
    out += [Note(s + 0.1, s + 0.9, 36 + (0 if s % 2 == 0 else 7) + transpose, 80) for s in range(int(seconds))]
    return sorted(out, key=lambda n: (n.onset, n.pitch))


def shifted(ns: list[Note], seconds: float = 0.0, semitones: int = 0) -> list[Note]:
    return [Note(n.onset + seconds, n.offset + seconds, n.pitch + semitones, n.velocity) for n in ns]


def test_note_f1_matches_onsets_within_50_ms_and_pitch_within_a_quarter_tone():
    ref = piece(C_MAJOR)
    assert notes.note_f1(ref, ref) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert notes.note_f1(ref, shifted(ref, 0.1))["f1"] == 0.0  # 100 ms late: no note matches
    assert notes.note_f1(ref, shifted(ref, 0.04))["f1"] == 1.0  # 40 ms late: all match
    assert notes.note_f1(ref, shifted(ref, 0.04), onset_tolerance=0.03)["f1"] == 0.0
    assert notes.note_f1(ref, shifted(ref, semitones=1))["f1"] == 0.0  # a semitone is 100 cents
    half = ref[::2]
    scores = notes.note_f1(ref, half)  # every estimate right, half the notes missed
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(len(half) / len(ref))


def test_offsets_count_only_when_asked():
    ref = [Note(0.5, 1.0, 60, 80), Note(1.5, 2.0, 64, 80)]
    long = [Note(n.onset, n.offset + 1.0, n.pitch, n.velocity) for n in ref]
    assert notes.note_f1(ref, long)["f1"] == 1.0
    assert notes.note_f1_with_offsets(ref, long)["f1"] == 0.0
    assert notes.note_f1_with_offsets(ref, ref)["f1"] == 1.0


def test_note_f1_of_empty_lists():
    some = [Note(0.5, 1.0, 60, 80)]
    assert notes.note_f1([], [])["f1"] == 1.0  # nothing to find, nothing found
    assert notes.note_f1(some, []) == {"precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert notes.note_f1([], some) == {"precision": 0.0, "recall": 1.0, "f1": 0.0}


def test_pitch_class_profile_weights_by_duration_or_count():
    ns = [Note(0.0, 3.0, 60, 80), Note(0.0, 1.0, 64, 80), Note(1.0, 2.0, 76, 80)]  # C 3 s, E 1 + 1 s
    by_time = notes.pitch_class_profile(ns)
    assert by_time[0] == pytest.approx(0.6) and by_time[4] == pytest.approx(0.4) and by_time.sum() == 1.0
    by_count = notes.pitch_class_profile(ns, weight="count")
    assert by_count[0] == pytest.approx(1 / 3) and by_count[4] == pytest.approx(2 / 3)
    assert not notes.pitch_class_profile([]).any()


def test_a_transposed_piece_correlates_less_with_the_prompt_than_the_piece_itself():
    prompt, same_key = piece(C_MAJOR, seed=0), piece(C_MAJOR, seed=1)
    tritone_away = piece(C_MAJOR, seed=1, transpose=6)
    assert notes.pitch_class_correlation(prompt, prompt) == pytest.approx(1.0)
    in_key = notes.pitch_class_correlation(prompt, same_key)
    assert in_key > 0.5 and notes.pitch_class_correlation(prompt, tritone_away) < in_key - 0.5
    assert notes.pitch_class_correlation(prompt, []) == 0.0  # nothing to correlate


def test_keys_are_estimated_and_scored_by_their_relation():
    c_major = piece(C_MAJOR)
    a_minor = piece([0, 2, 3, 5, 7, 8, 11], transpose=9)  # harmonic minor on A
    assert notes.estimate_key(c_major) == (0, "major")
    assert notes.estimate_key(a_minor) == (9, "minor")
    assert notes.estimate_key(shifted(c_major, semitones=3)) == (3, "major")
    assert notes.estimate_key([]) is None
    assert notes.key_agreement(c_major, piece(C_MAJOR, seed=5)) == 1.0
    assert notes.key_agreement(c_major, shifted(c_major, semitones=7)) == 0.5  # G major: a fifth above
    assert notes.key_agreement(c_major, a_minor) == 0.3  # relative minor
    assert notes.key_agreement(c_major, shifted(a_minor, semitones=3)) == 0.2  # C minor: parallel
    assert notes.key_agreement(c_major, shifted(c_major, semitones=6)) == 0.0
    assert notes.key_agreement(c_major, []) == 0.0


def test_continuation_metrics_by_second():
    prompt = piece(C_MAJOR, seconds=4.0)
    held = [Note(0.0, 3.0, 48, 80), Note(0.0, 3.0, 52, 80), Note(0.0, 3.0, 55, 80)]  # a C-major drone
    m = notes.continuation_note_metrics(prompt, held, 3.0)
    assert m["per_second"]["notes_per_second"] == [3.0, 0.0, 0.0]  # struck once, then held
    assert m["per_second"]["distinct_pitches"] == [3.0, 3.0, 3.0]  # sounding all along
    assert m["notes_per_second"] == 1.0 and m["distinct_pitches"] == 3.0
    assert m["key_agreement"] == 1.0  # a tonic triad is in the prompt's key...
    music = notes.continuation_note_metrics(prompt, shifted(piece(C_MAJOR, seed=3, seconds=4.0), -1.0), 3.0)
    assert music["notes_per_second"] > m["notes_per_second"] + 2  # ...but plays no notes
    assert music["distinct_pitches"] > m["distinct_pitches"] + 2
    # struck notes are counted only when the audio told which notes were struck
    assert set(notes.continuation_note_metrics(prompt, [], 2.0, per_second=False)) == set(notes.NOTE_METRICS) - {
        notes.STRUCK}
    some = notes.continuation_note_metrics(prompt, held, 3.0, struck_notes=held[:1])
    assert some["per_second"][notes.STRUCK] == [1.0, 0.0, 0.0] and set(some) == {*notes.NOTE_METRICS, "per_second"}
    short = notes.continuation_note_metrics(prompt, [Note(0.1, 0.4, 60, 80)], 0.5)  # one bin of half a second
    assert short["per_second"]["notes_per_second"] == [2.0] and short["distinct_pitches"] == 1.0


def test_split_at_the_prompts_end():
    ns = [Note(0.5, 1.2, 60, 80), Note(1.0, 3.0, 64, 80), Note(1.99, 2.5, 67, 80), Note(2.5, 2.8, 72, 80)]
    prompt, after = notes.split_at(ns, 2.0)
    assert [n.pitch for n in prompt] == [60, 64]
    # held from the prompt (onset before 0), an onset 10 ms early moves to 0, a later one shifts
    assert [(n.onset, n.pitch) for n in after] == [(-1.0, 64), (0.0, 67), (0.5, 72)]


def test_the_drone_is_the_prompts_tonic_triad_at_its_loudness():
    sr = 16000
    t = torch.arange(sr) / sr
    prompt_wav = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    g_major = piece(C_MAJOR, transpose=7)
    wav = notes.drone(prompt_wav, g_major, sr, 2.0)
    assert wav.shape == (2 * sr,) and torch.equal(wav, notes.drone(prompt_wav, g_major, sr, 2.0))
    assert float(wav.pow(2).mean().sqrt()) == pytest.approx(float(prompt_wav.pow(2).mean().sqrt()), rel=1e-3)
    top3 = set(drift.chroma(wav, sr).topk(3).indices.tolist())
    assert top3 == {7, 11, 2}  # G, B, D
    minor = notes.drone(prompt_wav, piece([0, 2, 3, 5, 7, 8, 11], transpose=9), sr, 1.0)
    assert set(drift.chroma(minor, sr).topk(3).indices.tolist()) == {9, 0, 4}  # A, C, E
    # no notes heard: the key comes from the prompt audio's chroma (an A... major or minor triad on A)
    assert 9 in drift.chroma(notes.drone(prompt_wav, [], sr, 1.0), sr).topk(3).indices.tolist()


@pytest.fixture(scope="module")
def rendered_piece():
    """6 s of a C-major piece rendered by fluidsynth at 16 kHz: 3 s prompt, 3 s true continuation."""
    try:
        wav = render_fluidsynth(piece(C_MAJOR, seconds=6.0), 16000)
    except PianogenError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))
    return wav[:6 * 16000]


def test_on_rendered_audio_the_drone_and_noise_score_below_the_true_continuation(rendered_piece):
    import pianogen

    sr, transcriber = 16000, pianogen.get_transcriber("basic_pitch")
    prompt, true = rendered_piece[:3 * sr], rendered_piece[3 * sr:]
    rms = float(prompt.pow(2).mean().sqrt())
    summary = notes.notes_summary(prompt, true, sr, transcriber)
    noise = notes.notes_summary(prompt, drift.coloured_noise(3 * sr, 0.0, rms, 0), sr, transcriber)
    assert summary["transcriber"] == "basic_pitch" and summary["prompt"]["key"] in ("C major", "A minor")
    assert summary["prompt"]["notes"] >= 10
    real, drone_floor, white = summary["continuation"], summary["floors"]["drone"], noise["continuation"]
    assert len(real["per_second"]["notes_per_second"]) == 3
    for floor in (drone_floor, white):
        assert floor["notes_per_second"] < real["notes_per_second"] - 1
        assert floor["struck_notes_per_second"] < real["struck_notes_per_second"] - 1  # a piano's notes are struck
        assert floor["distinct_pitches"] < real["distinct_pitches"]
    assert white["pitch_class_correlation"] < real["pitch_class_correlation"]
    assert real["pitch_class_correlation"] > 0.3 and real["key_agreement"] > 0
