"""Standard MIDI files <-> ``Performance`` (notes and pedals in seconds): ``pianogen.read_midi`` / ``write_midi``.

Reading merges every track and applies the tempo map, so a MAESTRO file (type 1, tempo track + piano track),
a sequencer's type-0 file and our own output meet in one form. Note-on with velocity 0 is a note-off; a
note still held at the end of the file is released there; CC64 is the sustain pedal, CC67 the soft pedal.
"""

from __future__ import annotations

import io
from pathlib import Path

import mido

from pianogen.errors import PianogenError
from pianogen.interfaces import SOFT_CC, SUSTAIN_CC, Note, Performance
from pianogen.paths import atomic_write_bytes

TICKS_PER_BEAT = 480
DEFAULT_BPM = 120.0  # MIDI's own default tempo, used when the performance names none (info["bpm"])


def midi_hz(pitch: int | float) -> float:
    """Equal-tempered frequency of a MIDI pitch (69 = A4 = 440 Hz)."""
    return 440.0 * 2 ** ((pitch - 69) / 12)


def read_midi(path: str | Path) -> Performance:
    """A standard MIDI file -> its notes (pitch 21..108 kept as written, any channel) and pedal events."""
    path = Path(path)
    try:
        midi = mido.MidiFile(path)
        messages = list(mido.merge_tracks(midi.tracks))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as err:
        raise PianogenError(f"{path}: not a readable MIDI file ({type(err).__name__}: {err})") from None
    if midi.type == 2:
        raise PianogenError(f"{path}: a type-2 MIDI file (independent sequences) is not a performance")
    notes: list[Note] = []
    sustain: list[tuple[float, int]] = []
    soft: list[tuple[float, int]] = []
    held: dict[tuple[int, int], list[tuple[float, int]]] = {}  # (channel, pitch) -> onsets still down
    tick_seconds = 500000 / 1e6 / midi.ticks_per_beat  # MIDI's default 120 bpm until a set_tempo
    now = 0.0
    for msg in messages:  # merged: delta times in ticks, in time order across tracks
        now += msg.time * tick_seconds
        if msg.type == "set_tempo":
            tick_seconds = msg.tempo / 1e6 / midi.ticks_per_beat
        elif msg.type == "note_on" and msg.velocity > 0:
            held.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
        elif msg.type in ("note_off", "note_on"):  # note_on with velocity 0 is a note-off
            onsets = held.get((msg.channel, msg.note))
            if onsets:
                onset, velocity = onsets.pop(0)  # first in, first out: overlapping repeats of one key
                notes.append(Note(onset, now, msg.note, velocity))
        elif msg.type == "control_change" and msg.control in (SUSTAIN_CC, SOFT_CC):
            (sustain if msg.control == SUSTAIN_CC else soft).append((now, msg.value))
    for (_, pitch), onsets in held.items():  # never released: let go at the end of the file
        notes += [Note(onset, now, pitch, velocity) for onset, velocity in onsets]
    notes.sort(key=lambda n: (n.onset, n.pitch))
    return Performance(notes, sustain, soft, info={"source": path.name})


def midi_file(performance: Performance) -> bytes:
    """The bytes of a type-0 MIDI file of ``performance``: one tempo (info["bpm"] or 120), program 0 (grand
    piano), notes on channel 0 and the pedals as CC64/CC67. Offs sort before ons at one tick, so a repeated
    key is released before it is struck again."""
    bpm = float(performance.info.get("bpm") or DEFAULT_BPM)

    def tick(seconds: float) -> int:
        return max(0, round(seconds * bpm / 60 * TICKS_PER_BEAT))

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order at one tick, message)
    for n in performance.notes:
        events.append((tick(n.onset), 3, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((tick(n.offset), 0, mido.Message("note_off", note=n.pitch, velocity=64)))
    for order, control, pedal in ((1, SUSTAIN_CC, performance.sustain), (2, SOFT_CC, performance.soft)):
        events += [(tick(t), order, mido.Message("control_change", control=control, value=v)) for t, v in pedal]
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=round(60e6 / bpm), time=0),
                            mido.Message("program_change", program=0, time=0)])
    now = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1], e[2].bytes())):
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    buffer = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=buffer)
    return buffer.getvalue()


def write_midi(performance: Performance, path: str | Path) -> None:
    """Write ``performance`` as a type-0 MIDI file at ``path``, atomically."""
    atomic_write_bytes(Path(path), midi_file(performance))
