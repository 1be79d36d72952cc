"""The piano composer (plugins/pianogen_data/composer.py): playable, deterministic, sized, and varied, the
variety measured over ten minutes of pieces the way a listener would notice it (meters, textures, tempi, keys,
register, dynamics, pedal, density, and no drone: every 8 s holds at least 8 distinct pitches)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pianogen_data.composer import compose
from pianogen_data.composer_textures import chord, progression, voice

from pianogen.errors import PianogenError
from pianogen.interfaces import PEDAL_DOWN, Note, Performance

CORPUS_SEEDS = range(14)  # 14 pieces x 45 s = 10.5 minutes
PIECE_SECONDS = 45.0


@pytest.fixture(scope="module")
def corpus() -> list[Performance]:
    return [compose(seed, PIECE_SECONDS) for seed in CORPUS_SEEDS]


def distinct_pitches_per_window(performance: Performance, window: float = 8.0, hop: float = 1.0) -> list[int]:
    """Distinct pitches struck in each ``window`` seconds, the windows ``hop`` apart over the whole piece."""
    a = performance.arrays()
    starts = np.arange(0.0, max(performance.duration - window, 0.0) + 1e-9, hop)
    return [len(set(a["pitch"][(a["onset"] >= s) & (a["onset"] < s + window)].tolist())) for s in starts]


def sustain_fraction(performance: Performance, step: float = 0.01) -> float:
    times = np.arange(0.0, performance.duration, step)
    return float(Performance.pedal_down_at(performance.sustain, times).mean())


def test_same_seed_same_piece_and_other_seeds_differ():
    a, b, c = compose(7, 30.0), compose(7, 30.0), compose(8, 30.0)
    assert a.notes == b.notes and a.sustain == b.sustain and a.soft == b.soft and a.info == b.info
    assert a.notes != c.notes


@pytest.mark.parametrize("seconds", [8.0, 30.0, 60.0, 150.0])
def test_duration_is_the_asked_length(seconds):
    for seed in range(3):
        assert abs(compose(seed, seconds).duration - seconds) <= 0.15 * seconds


def test_notes_and_pedals_are_playable(corpus):
    for piece in corpus:
        for n in piece.notes:
            assert 21 <= n.pitch <= 108 and 1 <= n.velocity <= 127 and 0 <= n.onset < n.offset
        for events in (piece.sustain, piece.soft):
            times = [t for t, _ in events]
            assert times == sorted(times) and all(0 <= v <= 127 for _, v in events)
            assert not events or events[-1][1] < PEDAL_DOWN  # every pedal comes up by the end
        keys = {}
        for n in sorted(piece.notes, key=lambda n: n.onset):  # one key cannot sound twice at once
            assert n.onset >= keys.get(n.pitch, -1.0)
            keys[n.pitch] = n.offset


def test_info_records_the_choices(corpus):
    for piece in corpus:
        info = json.loads(json.dumps(piece.info))
        assert info == piece.info
        assert info["key"].split()[1] in ("major", "minor") and info["title"]
        assert len(info["meters"]) == len(info["tempi"]) == len(info["sections"]) >= 1
        assert info["textures"] and all(isinstance(t, str) for t in info["textures"])


def test_variety_over_ten_minutes(corpus):
    meters = {m for p in corpus for m in p.info["meters"]}
    textures = {t for p in corpus for t in p.info["textures"]}
    tempi = [t for p in corpus for t in p.info["tempi"]]
    keys = {p.info["key"] for p in corpus}
    pitches = np.concatenate([p.arrays()["pitch"] for p in corpus])
    velocities = np.concatenate([p.arrays()["velocity"] for p in corpus])
    assert len(meters) >= 4, meters
    assert len(textures) >= 8, textures
    assert max(tempi) / min(tempi) >= 2.0, tempi
    assert len(keys) >= 6, keys
    assert pitches.min() < 36 and pitches.max() > 84
    assert velocities.min() < 40 and velocities.max() > 100  # pp to ff
    assert 0.2 <= np.mean([sustain_fraction(p) for p in corpus]) <= 0.9
    assert any(p.soft for p in corpus)  # una corda in some quiet passage
    assert sum(len(p.info["meters"]) > 1 for p in corpus) >= len(corpus) // 2  # pieces change as they go
    assert any(len(set(p.info["keys"])) > 1 for p in corpus)  # a modulation to a related key


def test_density_and_polyphony_are_a_pianists(corpus):
    for piece in corpus:
        a = piece.arrays()
        assert 2.0 <= len(a["onset"]) / piece.duration <= 20.0
        times = np.arange(0.0, piece.duration, 0.05)
        held = ((a["onset"][None, :] <= times[:, None]) & (a["offset"][None, :] > times[:, None])).sum(1)
        assert np.percentile(held, 95) < 16


def test_no_drone_anywhere(corpus):
    for seed, piece in zip(CORPUS_SEEDS, corpus):
        counts = distinct_pitches_per_window(piece)
        assert min(counts) >= 8, (seed, counts)


def test_the_drone_check_catches_a_drone():
    # seven pitches looped for a minute, the kind of continuation the check exists to reject
    drone = Performance([Note(0.25 * i, 0.25 * i + 0.2, 60 + [0, 2, 4, 5, 7, 9, 11][i % 7], 80) for i in range(240)])
    assert max(distinct_pitches_per_window(drone)) == 7


def test_the_pedal_changes_with_the_harmony(corpus):
    # legato pedalling: in a pedalled stretch the pedal comes up and goes down again at each chord change
    pedalled = [p for p in corpus if any(s["pedal"] for s in p.info["sections"])]
    assert pedalled
    for piece in pedalled:
        ups = sum(v < PEDAL_DOWN for _, v in piece.sustain)
        assert ups >= sum(s["bars"] for s in piece.info["sections"] if s["pedal"]) // 2


def test_harmony_knows_its_keys():
    assert chord("V", 9, "minor").pcs == (4, 8, 11)  # A minor's dominant is E major: E G# B
    assert chord("V7/V", 0, "major").pcs == (2, 6, 9, 0)  # C major's secondary dominant: D F# A C
    assert chord("ii", 0, "major").pcs == (2, 5, 9) and chord("VI", 9, "minor").pcs == (5, 9, 0)
    ends = [progression(np.random.default_rng(s), 8, 2, "major", final=True)[-2:] for s in range(5)]
    assert all(e == [chord("V7", 2, "major"), chord("I", 2, "major")] for e in ends)  # authentic cadence


def test_voice_leading_moves_little():
    c_major, f_major = chord("I", 0, "major"), chord("IV", 0, "major")
    upper = voice(c_major, [], 64)
    moved = voice(f_major, upper, 64)
    assert sorted(p % 12 for p in moved) == [0, 5, 9]
    assert sum(abs(a - b) for a, b in zip(upper, moved)) <= 3  # C-E-G to C-F-A: two voices step up


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(PianogenError, match="seconds"):
        compose(0, 0.0)
    with pytest.raises(PianogenError, match="seed"):
        compose(-1, 10.0)
