"""Synthetic corpus: determinism, layout, splits, MIDI files, piano-like notes, atomic writes."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest
import soundfile as sf

from pianogen.data import synth
from pianogen.errors import PianogenError


def read_midi(data: bytes) -> dict:
    """A minimal SMF reader (no running status: our writer never uses it)."""
    assert data[:4] == b"MThd"
    length, fmt, ntrks, division = struct.unpack(">IHHH", data[4:14])
    assert data[14:18] == b"MTrk"
    (track_len,) = struct.unpack(">I", data[18:22])
    track, i, tick, events = data[22:22 + track_len], 0, 0, []
    while i < len(track):
        delta = 0
        while True:
            delta = (delta << 7) | (track[i] & 0x7F)
            i += 1
            if not track[i - 1] & 0x80:
                break
        tick += delta
        status = track[i]
        if status == 0xFF:
            n = track[i + 2]
            events.append((tick, "meta", track[i + 1], track[i + 3:i + 3 + n]))
            i += 3 + n
        else:
            size = 2 if status & 0xF0 == 0xC0 else 3
            events.append((tick, "midi", status, track[i + 1:i + size]))
            i += size
    return {"header_len": length, "format": fmt, "tracks": ntrks, "division": division,
            "track_len": track_len, "events": events, "total_len": len(data)}


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


def test_midi_file_parses(corpus):
    rows = list(csv.DictReader(open(corpus / synth.CSV_NAME)))
    midi = read_midi((corpus / rows[0]["midi_filename"]).read_bytes())
    assert (midi["header_len"], midi["format"], midi["tracks"], midi["division"]) == (6, 0, 1, 480)
    assert midi["total_len"] == 22 + midi["track_len"]
    kinds = [(e[2] & 0xF0 if e[1] == "midi" else e[2]) for e in midi["events"]]
    assert kinds[0] == 0x51 and kinds[-1] == 0x2F  # tempo first, end-of-track last
    ons = [e for e in midi["events"] if e[1] == "midi" and e[2] & 0xF0 == 0x90]
    offs = [e for e in midi["events"] if e[1] == "midi" and e[2] & 0xF0 == 0x80]
    assert len(ons) == len(offs) > 10
    assert all(21 <= e[3][0] <= 108 and 1 <= e[3][1] <= 127 for e in ons)
    pedal = [e[3][1] for e in midi["events"] if e[1] == "midi" and e[2] == 0xB0 and e[3][0] == 64]
    assert pedal.count(127) == pedal.count(0)  # every pedal press is released


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


def test_refuses_non_empty_dir_and_leaves_nothing_when_killed(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PianogenError, match="not empty"):
        synth.write_corpus(tmp_path / "full", 0.2, 0, progress=False)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "midi_bytes", boom)
    with pytest.raises(KeyboardInterrupt):
        synth.write_corpus(tmp_path / "killed", 0.2, 0, progress=False)
    assert not (tmp_path / "killed").exists()
