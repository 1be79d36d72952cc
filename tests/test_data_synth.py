"""Synthetic corpus: determinism, layout, splits, MIDI files, piano-like notes, atomic writes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from pianogen_data import synth

import pianogen
from pianogen.errors import PianogenError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synth.write_corpus(tmp_path_factory.mktemp("c") / "corpus", 0.5, seed=3, progress=False)


def test_layout_and_splits(corpus):
    rows = list(csv.DictReader(open(corpus / synth.CSV_NAME)))
    assert list(rows[0]) == synth.CSV_COLUMNS
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    total = 0.0
    for r in rows:
        info = sf.info(str(corpus / r["audio_filename"]))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        assert info.duration == pytest.approx(float(r["duration"]), abs=1e-4)
        assert r["audio_filename"].startswith(f"{r['year']}/") and (corpus / r["midi_filename"]).is_file()
        total += info.duration
    assert total == pytest.approx(30, rel=0.25)
    assert not list(corpus.parent.glob(".*tmp*"))  # the temp dir was renamed, not left behind


@pytest.mark.parametrize("minutes", [0.2, 3, 30])
def test_plan_sizes_and_splits(minutes):
    plan = synth.plan(minutes, 0)
    assert {s for _, s in plan} == {"train", "validation", "test"}
    assert sum(s for s, _ in plan) == pytest.approx(minutes * 60)
    if minutes >= 3:
        assert all(12 <= s <= 80 for s, _ in plan)
    n_train = sum(s == "train" for _, s in plan)
    assert n_train >= 1 and (len(plan) < 9 or n_train >= 0.75 * len(plan))


def test_deterministic_by_seed(corpus, tmp_path):
    again = synth.write_corpus(tmp_path / "again", 0.5, seed=3, progress=False)
    other = synth.write_corpus(tmp_path / "other", 0.5, seed=4, progress=False)
    name = "2018/PianoGen-Synth_s3_000.wav"
    assert (again / synth.CSV_NAME).read_bytes() == (corpus / synth.CSV_NAME).read_bytes()
    assert (again / name).read_bytes() == (corpus / name).read_bytes()
    a, _ = sf.read(str(corpus / name))
    b, _ = sf.read(str(other / "2018/PianoGen-Synth_s4_000.wav"))
    n = min(len(a), len(b))
    assert not np.allclose(a[:n], b[:n])


def test_midi_file_is_the_score(corpus):
    import mido

    rows = list(csv.DictReader(open(corpus / synth.CSV_NAME)))
    path = corpus / rows[0]["midi_filename"]
    midi = mido.MidiFile(path)
    assert (midi.type, len(midi.tracks), midi.ticks_per_beat) == (0, 1, 480)
    assert midi.tracks[0][0].type == "set_tempo" and midi.tracks[0][-1].type == "end_of_track"
    played = pianogen.read_midi(path)
    score = synth.compose(np.random.default_rng([3, 1]), synth.plan(0.5, 3)[0][0])
    assert len(played.notes) == len(score.notes) > 10
    for note, (on, off, pitch, vel) in zip(played.notes, sorted(score.notes, key=lambda n: (n[0], n[2]))):
        assert (note.pitch, note.velocity) == (pitch, vel)
        assert note.onset == pytest.approx(on, abs=60 / score.bpm / 480) and note.offset == pytest.approx(off, abs=0.01)
    assert [v for _, v in played.sustain].count(127) == [v for _, v in played.sustain].count(0) == len(score.pedal)


def test_score_is_musical():
    score = synth.compose(np.random.default_rng(0), 30)
    pitches = np.array([p for _, _, p, _ in score.notes])
    onsets = np.array([t for t, _, _, _ in score.notes])
    assert len(set(pitches % 12)) <= 7  # one key (a diatonic / harmonic-minor scale)
    assert pitches.max() - pitches.min() >= 12 and onsets.max() > 15
    vels = np.array([v for *_, v in score.notes])
    assert vels.std() > 3  # dynamics, not one flat velocity


def test_note_has_inharmonic_partials_and_velocity_brightness():
    sr = synth.SAMPLE_RATE
    f0, pitch = 110.0, 45  # A2

    def spectrum(vel):
        x = synth.render_note(pitch, vel, 1.0, np.random.default_rng(0))[: sr]
        return np.abs(np.fft.rfft(x * np.hanning(len(x)))), np.fft.rfftfreq(len(x), 1 / sr)

    mag, freq = spectrum(100)
    inharm = 1e-4 * 2 ** ((pitch - 60) / 15)
    for n in (1, 2, 3, 5):  # spectral peaks sit on the stretched partials
        fn = n * f0 * np.sqrt(1 + inharm * n**2)
        band = (freq > fn - 20) & (freq < fn + 20)
        assert freq[band][np.argmax(mag[band])] == pytest.approx(fn, abs=2.0)
    centroid = [float((m * freq).sum() / m.sum()) for m, freq in (spectrum(30), spectrum(120))]
    assert centroid[1] > 1.3 * centroid[0]  # louder is brighter
    x = synth.render_note(pitch, 100, 0.5, np.random.default_rng(0))
    early, late = np.abs(x[: sr // 10]).max(), np.abs(x[int(0.8 * sr):]).max()
    assert late < 0.05 * early  # the damper stops it after the key is released


def test_refuses_non_empty_dir_and_resumes_where_a_killed_run_stopped(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PianogenError, match="not empty"):
        synth.write_corpus(tmp_path / "full", 0.2, 0, progress=False)
    whole = synth.write_corpus(tmp_path / "whole", 0.2, 0, progress=False)

    rendered = []
    real_render = synth.render

    def render_once_then_die(score, rng):
        if rendered:
            raise KeyboardInterrupt
        rendered.append(score.title)
        return real_render(score, rng)

    monkeypatch.setattr(synth, "render", render_once_then_die)
    with pytest.raises(KeyboardInterrupt):
        synth.write_corpus(tmp_path / "killed", 0.2, 0, progress=False)
    assert not (tmp_path / "killed").exists()
    (left,) = tmp_path.glob(".killed.tmp*")
    left.rename(tmp_path / ".killed.tmp999999999")  # as if its process had been killed: that pid is gone
    rendered.clear()
    monkeypatch.setattr(synth, "render", lambda score, rng: rendered.append(1) or real_render(score, rng))
    synth.write_corpus(tmp_path / "killed", 0.2, 0, progress=False)
    assert len(rendered) == len(synth.plan(0.2, 0)) - 1  # the piece finished before the kill was kept
    for path in whole.rglob("*"):
        if path.is_file():
            assert (tmp_path / "killed" / path.relative_to(whole)).read_bytes() == path.read_bytes()
    assert not list(tmp_path.glob(".killed.tmp*"))
    rendered.clear()
    synth.write_corpus(tmp_path / "killed", 0.2, 0, progress=False)  # asked again: nothing to do
    assert not rendered
