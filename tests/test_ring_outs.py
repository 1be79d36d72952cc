"""Ring-outs (``pianogen_data.ring_outs``): lone notes, chords and figures let ring, each key held long enough to
die away with nothing struck under it; rendered as the ``rendered`` source's ``music = "ring_outs"``."""

from __future__ import annotations

import pytest
import soundfile as sf
from pianogen_data.ring_outs import HOLD_SECONDS, ring_outs
from pianogen_data.sources import RenderedOptions

import pianogen
from pianogen.errors import PianogenError
from pianogen.paths import home
from tests.test_render import fake_set, renders  # noqa: F401 (fixtures)


def gestures(performance):
    """The notes grouped by gesture: the next gesture begins a quarter second or more after every key is up
    (a figure's notes follow each other closer than that)."""
    groups, current, released = [], [], -1.0
    for note in sorted(performance.notes, key=lambda n: n.onset):
        if current and note.onset >= released + 0.25:
            groups.append(current)
            current = []
        current.append(note)
        released = max(released, note.offset)
    return groups + [current]


def test_every_gesture_rings_alone_then_stops_before_the_next():
    performance = ring_outs(7, 300.0)
    groups = gestures(performance)
    assert len(groups) == performance.info["gestures"] >= 10
    for group, following in zip(groups, groups[1:]):
        released = max(n.offset for n in group)
        last_onset = max(n.onset for n in group)
        assert released - last_onset >= HOLD_SECONDS[0]  # the last sound rings with nothing struck under it
        assert following[0].onset - released >= 0.3  # released, and quiet, before the next gesture
    sizes = [len(g) for g in groups]
    assert 1 in sizes and max(sizes) > 1  # lone notes, and chords or figures
    pitches = [n.pitch for n in performance.notes]
    assert min(pitches) >= 21 and max(pitches) <= 108 and max(pitches) - min(pitches) > 36
    down = [t for t, v in performance.sustain if v > 0]
    assert 0 < len(down) < len(groups)  # the pedal through some gestures


def test_the_same_seed_the_same_ring_outs_and_bad_arguments_are_one_line():
    assert ring_outs(3, 60.0).notes == ring_outs(3, 60.0).notes != ring_outs(4, 60.0).notes
    with pytest.raises(PianogenError, match="seconds"):
        ring_outs(0, float("nan"))
    with pytest.raises(PianogenError, match="seed"):
        ring_outs(-1, 10.0)


def test_the_rendered_source_renders_ring_outs_in_their_own_folder(fake_set, renders):  # noqa: F811
    pieces = pianogen.get_data_source("rendered", minutes=0.5, seed=2, music="ring_outs").pieces()
    folder = home() / "rendered" / "m0.5-s2-ring_outs"
    assert len(pieces) == 3 and all(p.path.is_relative_to(folder) for p in pieces)
    assert all("RingOuts" in p.path.name for p in pieces)
    played = pianogen.read_midi(pieces[0].path.with_suffix(".midi"))  # written beside the audio
    held = max(n.offset - n.onset for n in played.notes)
    assert held >= HOLD_SECONDS[0] and sf.info(pieces[0].path).frames > 0
    assert len(renders) == 3
    with pytest.raises(PianogenError, match="data.music must be one of pieces, ring_outs"):
        RenderedOptions(music="fugues")
