"""A piano composer with variety: ``compose(seed, seconds)`` -> a humanised Performance of about ``seconds``.

A piece is a string of 4-8 bar sections in one home key (with excursions to related keys). Each section
draws its meter (2/4, 3/4, 4/4, 6/8, now and then 5/4), tempo, a texture for each hand (composer_textures.py:
chorale, Alberti bass, arpeggios, stride, waltz, octaves, scale runs, repeated chords, tremolo, melody over a
sustained bass ...), registers, dynamics with hairpins, and whether the sustain pedal is used. The notes are
written in beats, then played: a tempo map with rubato within phrases and ritardandi at cadences, timing
jitter, chord spread, a leading melody, velocity shaped by dynamics, phrase and metre, and legato pedalling
changed with the harmony. Training material for the sampler (``pianogen data render``), not for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pianogen.errors import PianogenError
from pianogen.interfaces import Note, Performance
from pianogen_data.composer_textures import (
    LEFT,
    NAMES,
    Chord,
    Event,
    Hands,
    Slot,
    arpeggio,
    chord_at,
    melody,
    near,
    progression,
    scale_runs,
    voice,
)

METERS = {"2/4": (2, 2), "3/4": (3, 2), "4/4": (4, 2), "6/8": (2, 3), "5/4": (5, 2)}  # beats a bar, pulses a beat
METER_ODDS = [0.16, 0.26, 0.28, 0.2, 0.1]
DYNAMICS = {"pp": 34, "p": 48, "mp": 60, "mf": 72, "f": 86, "ff": 100}  # mark -> velocity of its beats
MARKS = list(DYNAMICS)
RIGHT = ["melody", "melody in octaves", "melody in sixths", "scale runs", "right-hand arpeggios", "chorale"]
RIGHT_ODDS = [0.3, 0.14, 0.14, 0.13, 0.11, 0.18]
LEFT_FOR_MELODY = ["alberti bass", "broken-chord arpeggios", "stride", "waltz bass", "octave bass",
                   "sustained bass", "repeated chords", "tremolo"]
UNPEDALLED = {"alberti bass", "scale runs"}  # clarity over resonance: a pianist plays these dry
TITLES = {"alberti bass": "Sonatina", "broken-chord arpeggios": "Etude", "stride": "Rag", "waltz bass": "Waltz",
          "octave bass": "March", "sustained bass": "Nocturne", "repeated chords": "Impromptu",
          "tremolo": "Fantasia", "chorale": "Chorale", "scale runs": "Toccata", "right-hand arpeggios": "Prelude"}
ROLE_LOUDNESS = {"melody": 8, "bass": 2, "inner": -9}  # velocity offsets: the tune sings over its accompaniment


@dataclass
class Section:
    meter: str
    bpm: float  # beats a minute (a beat is a dotted quarter in 6/8)
    bars: int
    tonic: int  # pitch class of the section's key
    mode: str
    left: str  # texture names (composer_textures.LEFT keys; RIGHT)
    right: str
    dynamics: tuple[str, str]  # the marks at its start and end (a hairpin when they differ)
    pedal: bool
    final: bool  # the piece's last section: an authentic cadence and a held final chord
    start: float = 0.0  # first beat, from the start of the piece


def key_name(tonic: int, mode: str) -> str:
    return f"{NAMES[tonic]} {mode}"


def _related_key(rng: np.random.Generator, tonic: int, mode: str) -> tuple[int, str]:
    """A modulation's target: dominant, subdominant, relative or parallel key."""
    options = ([(7, "major"), (5, "major"), (9, "minor"), (0, "minor")] if mode == "major"
               else [(3, "major"), (7, "minor"), (5, "minor"), (0, "major")])
    shift, new_mode = options[int(rng.integers(len(options)))]
    return (tonic + shift) % 12, new_mode


def _tempo(rng: np.random.Generator, meter: str, previous: Section | None) -> float:
    lo, hi = (40.0, 92.0) if meter == "6/8" else (50.0, 160.0)  # 6/8 counts dotted quarters
    if previous is not None and previous.meter == meter and rng.random() < 0.45:  # a related tempo
        return float(np.clip(previous.bpm * rng.uniform(0.8, 1.25), lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _plan(rng: np.random.Generator, seconds: float, tonic: int, mode: str) -> list[Section]:
    """Sections until ``seconds`` are filled (the last one sized to fit, in the home key)."""
    sections: list[Section] = []
    elapsed = 0.0
    while True:
        prev = sections[-1] if sections else None
        meter = prev.meter if prev and rng.random() < 0.35 else str(rng.choice(list(METERS), p=METER_ODDS))
        bpm = _tempo(rng, meter, prev)
        right = str(rng.choice(RIGHT, p=RIGHT_ODDS))
        if right == "chorale":
            left, bpm = "chorale", min(bpm, float(rng.uniform(54, 96)))
        elif right == "right-hand arpeggios":
            left = "octave bass"
        else:
            choices = [t for t in LEFT_FOR_MELODY if t != "waltz bass"]
            left = "waltz bass" if meter == "3/4" and rng.random() < 0.3 else str(rng.choice(choices))
        beats = METERS[meter][0]
        bar_s = beats * 60 / bpm
        # bars that fit: the closing chord rings ~2.75 s in place of a bar; rubato and ritardandi stretch a little
        bars_left = (seconds - elapsed - 2.75) / (bar_s * 1.06) + 1
        final = bars_left < 11
        bars = max(1, round(bars_left)) if final else int(rng.choice([4, 6, 8]))
        key = (tonic, mode) if final or not sections or rng.random() < 0.65 else _related_key(rng, tonic, mode)
        loud = MARKS.index(str(rng.choice(MARKS, p=[0.1, 0.2, 0.2, 0.22, 0.18, 0.1])))
        if right in ("scale runs", "melody in octaves") or left == "tremolo":
            loud = max(loud, 2)  # bravura figures are rarely whispered
        end = int(np.clip(loud + rng.choice([-2, -1, 0, 0, 1, 2]), 0, len(MARKS) - 1))
        pedal = left not in UNPEDALLED and right not in UNPEDALLED and rng.random() < 0.92
        sections.append(Section(meter, bpm, bars, key[0], key[1], left, right, (MARKS[loud], MARKS[end]),
                                pedal, final, start=sections[-1].start + sections[-1].bars * METERS[
                                    sections[-1].meter][0] if sections else 0.0))
        elapsed += bars * bar_s * 1.04
        if final:
            return sections


def _pulses_per_second(sec: Section) -> float:
    """How fast the meter's pulse (eighths) goes: what decides whether figures run in sixteenths."""
    return sec.bpm * METERS[sec.meter][1] / 60


def _slot_lengths(rng: np.random.Generator, sec: Section) -> list[float]:
    """Harmonic rhythm: the chords of one bar, as beats each lasts."""
    beats = METERS[sec.meter][0]
    if sec.right == "chorale" and sec.bpm < 80:
        return [1.0] * beats if beats != 5 else [2.0, 1.0, 2.0]
    slow = _pulses_per_second(sec) < 2.4  # a bar lasts long: the harmony moves within it
    if beats == 4 and sec.bpm < 110 and (slow or rng.random() < 0.8):
        return [2.0, 2.0]
    if beats == 3 and slow and rng.random() < 0.6:
        return [2.0, 1.0]
    if sec.meter == "6/8" and slow:
        return [1.0, 1.0]
    return [3.0, 2.0] if beats == 5 else [float(beats)]


def _harmonised(line: list[tuple[float, float, int]], slots: list[Slot], voices: int) -> list[Event]:
    """The tune plus ``voices`` chord tones stacked under each note (sixths/thirds below; a chorale's alto and
    tenor), struck again where the harmony changes under a held note."""
    out: list[Event] = []
    for beat, length, pitch in line:
        out.append((beat, length, pitch, "melody"))
        cuts = [beat] + [s.start for s in slots if beat < s.start < beat + length] + [beat + length]
        for start, end in zip(cuts, cuts[1:]):
            ch, upper = chord_at(slots, start), pitch
            for _ in range(voices):
                upper = max(q for q in range(upper - 9, upper - 2) if q % 12 in ch.pcs)
                out.append((start, end - start, upper, "inner"))
    return out


def _right_hand(sec: Section, slots: list[Slot], hands: Hands, bars: list[float]) -> list[Event]:
    if sec.right == "scale runs":
        return [(b, ln, p, "melody") for b, ln, p in scale_runs(slots, hands, sec.tonic, sec.mode, bars)]
    if sec.right == "right-hand arpeggios":
        return [(b, ln, p, "inner" if i % 4 else "melody")
                for i, (b, ln, p, _) in enumerate(arpeggio(slots, hands, low=hands.top - 10, fine=True))]
    line = melody(slots, hands, sec.tonic, sec.mode, bars, plain=sec.right == "chorale")
    if sec.right == "melody in octaves":
        return [(b, ln, p, "melody") for b, ln, q in line for p in (q, q - 12)]
    return _harmonised(line, slots, {"melody": 0, "melody in sixths": 1, "chorale": 2}[sec.right])


def _final_chord(ch: Chord, hands: Hands, beat: float, length: float, last_top: int) -> list[Event]:
    """The closing tonic: a doubled bass, a full chord and the tune's last note on top, held."""
    bass = near(ch.root, hands.bass - 2)
    top = min((near(pc, last_top) for pc in ch.pcs), key=lambda p: abs(p - last_top))
    inner = voice(ch, [], top - 8)
    return ([(beat, length, bass, "bass"), (beat, length, bass - 12, "bass"), (beat, length, top, "melody")]
            + [(beat, length, p, "inner") for p in inner if p < top])


def _write(rng: np.random.Generator, sections: list[Section]) -> tuple[list[Event], list[list[float]], list[int]]:
    """Every section's notes in beats; also each section's chord-change beats (for pedalling) and event owner."""
    events: list[Event] = []
    changes: list[list[float]] = []
    owner: list[int] = []
    last_top = 72
    for si, sec in enumerate(sections):
        beats, sub = METERS[sec.meter]
        top = int(rng.integers(70 if sec.right == "chorale" else 66, 86))
        bass = min(int(rng.integers(33, 50)), top - 30)  # the accompaniment stays under the tune
        hands = Hands(rng, sub, beats, bass=bass, top=top,
                      fast=_pulses_per_second(sec) > 4.2, slow=_pulses_per_second(sec) < 2.4,
                      doubled=rng.random() < 0.5)
        bars = [sec.start + i * beats for i in range(sec.bars)]
        body = bars[:-1] if sec.final else bars
        pattern = _slot_lengths(rng, sec)
        lengths = [(b + sum(pattern[:j]), ln) for b in body for j, ln in enumerate(pattern)]
        chords = progression(rng, len(lengths) + int(sec.final), sec.tonic, sec.mode, sec.final)
        slots = [Slot(b, ln, c) for (b, ln), c in zip(lengths, chords)]
        notes: list[Event] = []
        if slots:
            notes = LEFT[sec.left](slots, hands) + _right_hand(sec, slots, hands, body)
            last_top = max((p for b, _, p, r in notes if r == "melody" and b >= body[-1]), default=last_top)
        changes.append([s.start for s in slots])
        if sec.final:
            notes += _final_chord(chords[-1], hands, bars[-1], float(beats), last_top)
            changes[-1].append(bars[-1])
        events += notes
        owner += [si] * len(notes)
    return events, changes, owner


def _tempo_map(rng: np.random.Generator, sections: list[Section]) -> np.ndarray:
    """Seconds at every whole beat: each section's tempo with rubato (slower at a phrase's ends, pressing on in
    its middle), a ritardando into each cadence (broader at the end) and sometimes a breath between sections."""
    spb = []
    for sec in sections:
        beats = METERS[sec.meter][0]
        n = sec.bars * beats
        k = np.arange(n)
        phrase = min(4, sec.bars) * beats
        f = 1 + rng.uniform(0.02, 0.07) * np.cos(2 * np.pi * (k % phrase) / phrase)
        rit = rng.uniform(0.3, 0.7) if sec.final else rng.uniform(0.05, 0.3)
        cadence_end = n - beats if sec.final and sec.bars > 1 else n  # the final chord is held apart
        f[:cadence_end] *= 1 + rit * np.clip((k[:cadence_end] - (cadence_end - beats) + 1) / beats, 0, 1) ** 2
        if not sec.final and rng.random() < 0.4:
            f[-1] *= 1 + rng.uniform(0.1, 0.4)
        beat_s = 60 / sec.bpm * f
        if sec.final:  # the last chord rings 2-3.5 s, whatever the tempo
            beat_s[cadence_end:] = rng.uniform(2.0, 3.5) / (n - cadence_end or 1)
        spb.append(beat_s)
    spb.append(spb[-1][-1:].repeat(8))  # room for notes that ring past the last beat
    return np.concatenate([[0.0], np.cumsum(np.concatenate(spb))])


def _velocity(rng: np.random.Generator, sec: Section, beat: float, role: str) -> int:
    beats = METERS[sec.meter][0]
    span = sec.bars * beats
    x = (beat - sec.start) / span  # position in the section: the hairpin
    level = DYNAMICS[sec.dynamics[0]] + x * (DYNAMICS[sec.dynamics[1]] - DYNAMICS[sec.dynamics[0]])
    phrase = min(4, sec.bars) * beats
    level += 7 * math.sin(math.pi * ((beat - sec.start) % phrase) / phrase) - 3  # swell within the phrase
    pos = (beat - sec.start) % beats
    accent = 6 if pos < 1e-6 else 2 if abs(pos - round(pos)) < 1e-6 else -2
    return int(np.clip(round(level + ROLE_LOUDNESS[role] + accent + rng.normal(0, 4)), 1, 127))


def _play(rng: np.random.Generator, sections: list[Section], events: list[Event], owner: list[int],
          grid: np.ndarray) -> list[Note]:
    """Beats to seconds with a person's timing: jittered chords, spread notes, a leading melody, legato."""
    def at(beat: float) -> float:
        return float(np.interp(beat, np.arange(len(grid)), grid))

    group_jitter: dict[int, float] = {}
    spread = [rng.uniform(0.004, 0.025) for _ in sections]
    notes = []
    for (beat, length, pitch, role), si in zip(events, owner):
        key = round(beat * 48)
        if key not in group_jitter:
            group_jitter[key] = float(np.clip(rng.normal(0, 0.011), -0.03, 0.03))
        shift = {"melody": -0.008, "bass": 0.0, "inner": rng.uniform(0, spread[si])}[role]
        onset = max(0.0, at(beat) + group_jitter[key] + shift + rng.normal(0, 0.005))
        if role == "melody":
            offset = at(beat + length) + rng.uniform(0.01, 0.05)  # legato: the next key goes down first
        else:
            offset = at(beat + length * (0.9 if role == "inner" else 0.97))
        while pitch < 21:
            pitch += 12
        while pitch > 108:
            pitch -= 12
        vel = _velocity(rng, sections[si], beat, role)
        notes.append(Note(onset, max(offset, onset + 0.05), int(pitch), vel))
    return _one_key_one_note(notes)


def _one_key_one_note(notes: list[Note]) -> list[Note]:
    """A key cannot be struck twice at once: merge same-pitch doubles, release a key before it is struck again."""
    notes = sorted(notes, key=lambda n: (n.pitch, n.onset))
    out: list[Note] = []
    for n in notes:
        if out and out[-1].pitch == n.pitch and n.onset < out[-1].offset:
            prev = out[-1]
            if n.onset - prev.onset < 0.06:  # the same stroke twice (both hands): keep the louder, longer one
                out[-1] = Note(prev.onset, max(prev.offset, n.offset), prev.pitch, max(prev.velocity, n.velocity))
                continue
            out[-1] = Note(prev.onset, max(prev.onset + 0.03, n.onset - 0.01), prev.pitch, prev.velocity)
        out.append(n)
    return sorted(out, key=lambda n: (n.onset, n.pitch))


def _pedal(rng: np.random.Generator, sections: list[Section], changes: list[list[float]],
           grid: np.ndarray, end: float) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Legato sustain pedal: up just after each new harmony sounds, down again a moment later (none in dry
    textures); the soft pedal through some quiet sections."""
    def at(beat: float) -> float:
        return float(np.interp(beat, np.arange(len(grid)), grid))

    sustain: list[tuple[float, int]] = []
    soft: list[tuple[float, int]] = []
    down = False
    for sec, starts in zip(sections, changes):
        if sec.pedal:
            for b in starts:
                t = at(b)
                if down:
                    sustain.append((t + rng.uniform(0.03, 0.07), 0))
                sustain.append((t + rng.uniform(0.1, 0.17), int(rng.integers(100, 128))))
                down = True
        elif down:
            sustain.append((at(sec.start) + rng.uniform(0.02, 0.06), 0))
            down = False
        if DYNAMICS[sec.dynamics[0]] <= DYNAMICS["p"] and rng.random() < 0.6:
            section_end = at(sec.start + sec.bars * METERS[sec.meter][0])
            soft += [(max(0.0, at(sec.start) - 0.05), 127), (min(section_end, end), 0)]
    if down:
        sustain.append((end, 0))
    return _monotone(sustain, end), _monotone(soft, end)


def _monotone(events: list[tuple[float, int]], end: float) -> list[tuple[float, int]]:
    """Pedal events in strictly increasing time, none after the piece ends."""
    out: list[tuple[float, int]] = []
    for t, v in sorted(events, key=lambda e: e[0]):
        t = min(t, end)
        if out and t <= out[-1][0]:
            t = out[-1][0] + 1e-3
        out.append((round(t, 6), v))
    return [(t, v) for t, v in out if t <= end + 1e-2]


def compose(seed: int, seconds: float) -> Performance:
    """One humanised piano piece of about ``seconds`` (within a few per cent), deterministic in ``seed``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PianogenError(f"composer seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise PianogenError(f"composer seconds must be a positive number, got {seconds!r}")
    rng = np.random.default_rng([int(seed), 25])
    tonic, mode = int(rng.integers(12)), str(rng.choice(["major", "minor"]))
    sections = _plan(rng, seconds, tonic, mode)
    events, changes, owner = _write(rng, sections)
    grid = _tempo_map(rng, sections)
    notes = _play(rng, sections, events, owner, grid)
    sustain, soft = _pedal(rng, sections, changes, grid, max(n.offset for n in notes))
    # the plan aims at ``seconds``; a uniform tempo scaling lands it (and the reported tempi follow)
    scale = seconds / Performance(notes, sustain, soft).duration
    notes = [Note(n.onset * scale, n.offset * scale, n.pitch, n.velocity) for n in notes]
    sustain = [(t * scale, v) for t, v in sustain]
    soft = [(t * scale, v) for t, v in soft]
    textures = list(dict.fromkeys(t for s in sections for t in (s.left, s.right)))
    info = {"title": f"{TITLES.get(sections[0].right, TITLES[sections[0].left])} "
                     f"in {key_name(tonic, mode)}",
            "key": key_name(tonic, mode), "keys": [key_name(s.tonic, s.mode) for s in sections],
            "meters": [s.meter for s in sections], "tempi": [round(s.bpm / scale, 1) for s in sections],
            "textures": textures, "dynamics": [list(s.dynamics) for s in sections],
            "sections": [{"bars": s.bars, "meter": s.meter, "bpm": round(s.bpm / scale, 1),
                          "beat": "dotted quarter" if s.meter == "6/8" else "quarter",
                          "key": key_name(s.tonic, s.mode), "left": s.left, "right": s.right,
                          "dynamics": list(s.dynamics), "pedal": s.pedal} for s in sections],
            "seed": int(seed), "composer": "pianogen_data.composer"}
    return Performance(notes, sustain, soft, info)
