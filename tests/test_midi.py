"""MIDI files <-> Performance: tracks merged, the tempo map applied, velocity-0 note-offs, pedals, bad files."""

from __future__ import annotations

import mido
import pytest

import pianogen
from pianogen.errors import PianogenError
from pianogen.interfaces import Note, Performance


def test_a_type_1_file_with_tempo_changes_reads_in_seconds(tmp_path):
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),  # 120 bpm: a beat is 0.5 s
                            mido.MetaMessage("set_tempo", tempo=1000000, time=960)])  # from beat 2: 60 bpm
    piano = mido.MidiTrack([
        mido.Message("control_change", control=64, value=127, time=0),
        mido.Message("note_on", note=60, velocity=80, time=480),  # beat 1 = 0.5 s
        mido.Message("note_on", note=60, velocity=0, time=480),  # beat 2 = 1.0 s, velocity 0: an off
        mido.Message("note_on", note=64, velocity=90, time=0),
        mido.Message("control_change", control=67, value=100, time=240),  # beat 2.5 = 1.5 s at 60 bpm
        mido.Message("note_off", note=64, velocity=0, time=240),  # beat 3 = 2.0 s
        mido.Message("control_change", control=64, value=0, time=0),
        mido.Message("note_on", note=67, velocity=70, time=480)])  # beat 4 = 3.0 s, never released
    path = tmp_path / "tempo.mid"
    mido.MidiFile(type=1, ticks_per_beat=480, tracks=[tempo, piano]).save(path)
    played = pianogen.read_midi(path)
    assert played.notes == [Note(0.5, 1.0, 60, 80), Note(1.0, 2.0, 64, 90), Note(3.0, 3.0, 67, 70)]
    assert played.sustain == [(0.0, 127), (2.0, 0)] and played.soft == [(1.5, 100)]
    assert list(played.pedal_down_at(played.sustain, [0.5, 1.99, 2.5])) == [True, True, False]


def test_write_then_read_round_trips(tmp_path):
    notes = [Note(0.0, 0.5, 60, 64), Note(0.25, 1.75, 48, 100), Note(0.5, 0.75, 60, 30), Note(1.0, 2.0, 108, 1)]
    performance = Performance(notes, [(0.1, 127), (1.2, 0)], [(0.3, 90), (0.9, 0)], info={"bpm": 90.0})
    path = tmp_path / "out.midi"
    pianogen.write_midi(performance, path)
    back = pianogen.read_midi(path)
    tick = 60 / 90 / 480
    assert len(back.notes) == len(notes)
    for a, b in zip(back.notes, sorted(notes, key=lambda n: (n.onset, n.pitch))):
        assert (a.pitch, a.velocity) == (b.pitch, b.velocity)
        assert a.onset == pytest.approx(b.onset, abs=tick) and a.offset == pytest.approx(b.offset, abs=tick)
    assert [v for _, v in back.sustain] == [127, 0] and [v for _, v in back.soft] == [90, 0]
    assert back.sustain[1][0] == pytest.approx(1.2, abs=tick)
    midi = mido.MidiFile(path)
    assert midi.type == 0 and midi.tracks[0][0].tempo == round(60e6 / 90)
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temp file


def test_a_repeated_key_is_released_before_it_is_struck_again(tmp_path):
    path = tmp_path / "repeat.mid"
    pianogen.write_midi(Performance([Note(0.0, 0.5, 60, 80), Note(0.5, 1.0, 60, 90)]), path)
    assert pianogen.read_midi(path).notes == [Note(0.0, 0.5, 60, 80), Note(0.5, 1.0, 60, 90)]


@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00\x00\x06\x00\x00", b"not a midi file at all" * 10])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "broken.mid"
    path.write_bytes(content)
    with pytest.raises(PianogenError, match="broken.mid") as err:
        pianogen.read_midi(path)
    assert "\n" not in str(err.value)
    with pytest.raises(PianogenError, match="missing.mid"):
        pianogen.read_midi(tmp_path / "missing.mid")
