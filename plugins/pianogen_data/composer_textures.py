"""Harmony, voice leading, melody and the piano textures the composer (composer.py) draws on.

Everything here is in score time: beats from the start of the piece (a beat is a quarter note, or a dotted
quarter in 6/8) and MIDI pitches. An event is ``(beat, length in beats, pitch, role)``; the role ("melody",
"bass", "inner") sets its loudness later, when composer.py turns beats into seconds and plays them like a person.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor; V and vii take the raised leading tone (see chord())
ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii"]
# Functional progressions as roman numerals (case is for the reader; the key decides each chord's quality).
# "V/V" is a secondary dominant; the circle-of-fifths rows walk down by fifths through the key.
PROGRESSIONS = {
    "major": ["I IV V I", "I vi ii V", "I ii7 V7 I", "I IV vii iii vi ii V I", "I V/V V I", "I vi IV V",
              "I V/vi vi IV", "I IV I V", "I iii IV V", "I IV V vi", "I V7/IV IV V"],
    "minor": ["i iv V i", "i VI iv V", "i ii7 V7 i", "i iv VII III VI ii V i", "i V7/iv iv V", "i VI III VII",
              "i iv V VI", "i VII VI V", "i V/V V i"],
}
CADENCES = {  # the last two chords of a section: authentic, half, deceptive, plagal
    "major": [["V7", "I"], ["ii", "V"], ["V7", "vi"], ["IV", "I"]],
    "minor": [["V7", "i"], ["iv", "V"], ["V7", "VI"], ["iv", "i"]],
}

Event = tuple[float, float, int, str]  # (beat, length in beats, MIDI pitch, role)


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class 0..11
    pcs: tuple[int, ...]  # pitch classes, root first (triad or seventh chord)
    bass: int  # pitch class in the bass: the root, or the third for a first inversion


@dataclass
class Slot:
    start: float  # beat where the chord begins
    length: float  # beats it lasts
    chord: Chord


@dataclass
class Hands:
    """What every texture needs: the meter's pulse grid, the registers and the section's random stream."""

    rng: np.random.Generator
    sub: int  # pulses per beat: 2 in x/4, 3 in 6/8
    beats_per_bar: int
    bass: int  # centre of the bass register (MIDI)
    top: int  # centre of the melody register (MIDI)
    fast: bool  # a quick tempo: running figures go in pulses, not half pulses
    slow: bool  # a slow tempo: the tune moves in shorter notes so the music does not stall
    doubled: bool  # bass notes doubled an octave below (stride, octave bass)
    voicing: list[int] = field(default_factory=list)  # the last block-chord voicing, for voice leading


def scale_of(mode: str) -> tuple[int, ...]:
    return MAJOR if mode == "major" else MINOR


def chord(numeral: str, tonic: int, mode: str) -> Chord:
    """'IV', 'V7', 'ii7', 'V7/V' (a secondary dominant) -> its pitch classes in the key ``tonic`` ``mode``."""
    head, _, target = numeral.partition("/")
    seventh = head.endswith("7")
    degree = ROMAN.index(head.rstrip("7").lower())
    scale = list(scale_of(mode))
    if target:  # the dominant of the target degree: a major triad (with a minor seventh)
        root = (tonic + scale[ROMAN.index(target.lower())] + 7) % 12
        pcs = tuple((root + i) % 12 for i in ((0, 4, 7, 10) if seventh else (0, 4, 7)))
        return Chord(root, pcs, root)
    if mode == "minor" and degree in (4, 6):
        scale[6] = 11  # harmonic minor: a major V and a diminished vii lead home
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    pcs = tuple((tonic + scale[(degree + s) % 7]) % 12 for s in steps)
    return Chord(pcs[0], pcs, pcs[0])


def progression(rng: np.random.Generator, n: int, tonic: int, mode: str, final: bool) -> list[Chord]:
    """``n`` chords: functional templates strung together, ending in a cadence (authentic when ``final``)."""
    if n <= 1:
        return [chord("I", tonic, mode)]
    body: list[str] = []
    while len(body) < n - 2:
        body += PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))].split()
    cadences = CADENCES[mode]
    cadence = cadences[0] if final else cadences[int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))]
    chords = [chord(c, tonic, mode) for c in body[:n - 2] + cadence]
    for i in range(1, n - 2):  # a few first inversions smooth the bass line
        if rng.random() < 0.2:
            c = chords[i]
            chords[i] = Chord(c.root, c.pcs, c.pcs[1])
    return chords


def voice(ch: Chord, previous: list[int], centre: int, n: int = 3) -> list[int]:
    """``n`` chord tones near ``centre``, each voice moving as little as possible from ``previous``."""
    pcs = list(ch.pcs if len(ch.pcs) <= n else ch.pcs[:2] + ch.pcs[3:])  # a seventh chord drops its fifth
    pcs += [ch.root] * (n - len(pcs))
    if len(previous) != n:
        previous = [centre - 4 + 4 * i for i in range(n)]
    best, best_cost = previous, float("inf")
    for perm in set(itertools.permutations(pcs)):
        pitches = [p + (q - p + 6) % 12 - 6 for p, q in zip(previous, perm)]
        cost = sum(abs(a - b) for a, b in zip(pitches, previous)) + 12 * (len(set(pitches)) < n)
        if cost < best_cost:
            best, best_cost = sorted(pitches), cost
    drift = int(np.mean(best)) - centre  # voice leading may creep; an octave jump brings it home
    return [p - 12 * round(drift / 12) for p in best]


def near(pc: int, centre: int) -> int:
    """The pitch of class ``pc`` closest to ``centre``."""
    return centre + (pc - centre + 6) % 12 - 6


def _pulse(h: Hands, fine: bool) -> float:
    """Beats per note of a running figure: half pulses (sixteenths) when slow enough and ``fine``."""
    return 1 / h.sub if h.fast or not fine else 1 / (2 * h.sub)


def _grid(slot: Slot, step: float) -> list[float]:
    return [slot.start + i * step for i in range(max(1, int(round(slot.length / step))))]


def _strong(h: Hands, beat: float) -> bool:
    """Beats where a stride or waltz bass falls: 1 (and 3 in 4/4, 4 in 5/4)."""
    pos = round(beat) % h.beats_per_bar
    return pos == 0 or (h.beats_per_bar == 4 and pos == 2) or (h.beats_per_bar == 5 and pos == 3)


def _bass(h: Hands, ch: Chord, beat: float, length: float) -> list[Event]:
    p = near(ch.bass, h.bass)
    out = [(beat, length, p, "bass")]
    return out + [(beat, length, p - 12, "bass")] if h.doubled and p - 12 >= 21 else out


def alberti(slots: list[Slot], h: Hands) -> list[Event]:
    """Low-high-middle-high broken triads in pulses (half pulses when slow), the classical sonata's left hand."""
    out = []
    for s in slots:
        h.voicing = v = voice(s.chord, h.voicing, h.bass + 14)
        step = _pulse(h, h.slow)
        out += [(t, step, v[(0, 2, 1, 2)[i % 4]], "inner") for i, t in enumerate(_grid(s, step))]
    return out


def arpeggio(slots: list[Slot], h: Hands, low: int | None = None, fine: bool = True) -> list[Event]:
    """Broken chords over two octaves, up and back down, from the bass (or from ``low``)."""
    out = []
    for s in slots:
        start = near(s.chord.bass, h.bass) if low is None else near(s.chord.root, low)
        tones = [p for p in range(start, start + 25) if p % 12 in s.chord.pcs][:7]
        cycle = tones + tones[-2:0:-1]
        step = _pulse(h, fine)
        out += [(t, step * 1.5, cycle[i % len(cycle)], "bass" if i == 0 else "inner")
                for i, t in enumerate(_grid(s, step))]
    return out


def stride(slots: list[Slot], h: Hands, leap: int = 12) -> list[Event]:
    """A bass note on the strong beats and detached chords ``leap`` semitones higher on the others."""
    out = []
    for s in slots:
        h.voicing = v = voice(s.chord, h.voicing, h.bass + leap + 7)
        for t in _grid(s, 1.0):
            if _strong(h, t):
                out += _bass(h, s.chord, t, 1.0)
            else:
                out += [(t, 0.5, p, "inner") for p in v]
    return out


def waltz(slots: list[Slot], h: Hands) -> list[Event]:
    """Oom-pah-pah in 3/4: the bass on one, a close chord on two and three (a stride otherwise)."""
    return stride(slots, h, leap=7)


def octave_bass(slots: list[Slot], h: Hands) -> list[Event]:
    """The bass in octaves, walking through the chord tones beat by beat (every other beat when fast)."""
    out = []
    doubled, h.doubled = h.doubled, True
    for s in slots:
        step = 2.0 if h.fast and s.length >= 2 else 1.0
        for i, t in enumerate(_grid(s, step)):
            pc = s.chord.bass if i == 0 else s.chord.pcs[(0, 2, 1, 2)[i % 4] % len(s.chord.pcs)]
            out += _bass(h, Chord(s.chord.root, s.chord.pcs, pc), t, step * 0.9)
    h.doubled = doubled
    return out


def sustained_bass(slots: list[Slot], h: Hands) -> list[Event]:
    """A bass held through the harmony with quiet chord tones stirring above it, off the bass's stroke."""
    out = []
    for s in slots:
        out += _bass(h, s.chord, s.start, s.length)
        h.voicing = v = voice(s.chord, h.voicing, h.bass + 14)
        step = _pulse(h, h.slow)
        out += [(t, step * 2, v[(0, 1, 2, 1)[i % 4]], "inner") for i, t in enumerate(_grid(s, step)) if i]
    return out


def repeated_chords(slots: list[Slot], h: Hands) -> list[Event]:
    """Block chords struck on every pulse (every beat when fast) over the bass."""
    out = []
    for s in slots:
        out += _bass(h, s.chord, s.start, s.length)
        h.voicing = v = voice(s.chord, h.voicing, h.bass + 15)
        step = 1.0 if h.fast else 1 / h.sub
        out += [(t, step * 0.6, p, "inner") for t in _grid(s, step) for p in v]
    return out


def tremolo(slots: list[Slot], h: Hands) -> list[Event]:
    """A measured tremolo in half pulses: the bass against an upper chord tone that changes every beat."""
    out = []
    for s in slots:
        b = near(s.chord.bass, h.bass)
        uppers = [p for p in range(b + 7, b + 17) if p % 12 in s.chord.pcs]  # fifth, octave, tenth ...
        step = _pulse(h, True)
        out += [(t, step, uppers[int((t - s.start) % len(uppers))] if i % 2 else b, "bass" if i == 0 else "inner")
                for i, t in enumerate(_grid(s, step))]
    return out


def chorale_bass(slots: list[Slot], h: Hands) -> list[Event]:
    """The chorale's bass voice: one note a beat, stepping to the chord's other tones within the harmony."""
    out = []
    for s in slots:
        for i, t in enumerate(_grid(s, 1.0)):
            pc = s.chord.bass if i % 2 == 0 else s.chord.pcs[(i // 2 + 1) % len(s.chord.pcs)]
            out.append((t, 1.0, near(pc, h.bass + 4), "bass"))
    return out


LEFT = {"alberti bass": alberti, "broken-chord arpeggios": arpeggio, "stride": stride, "waltz bass": waltz,
        "octave bass": octave_bass, "sustained bass": sustained_bass, "repeated chords": repeated_chords,
        "tremolo": tremolo, "chorale": chorale_bass}


def chord_at(slots: list[Slot], beat: float) -> Chord:
    for s in reversed(slots):
        if s.start <= beat + 1e-9:
            return s.chord
    return slots[0].chord


def _cells(h: Hands, plain: bool) -> list[list[float]]:
    """One-beat melody rhythms on the meter's pulse grid (finer ones only when the tempo allows)."""
    if plain:
        return [[1.0], [1.0], [0.5, 0.5]] if h.sub == 2 else [[1.0], [2 / 3, 1 / 3]]
    if h.sub == 3:
        cells = [[1.0], [2 / 3, 1 / 3], [1 / 3] * 3, [1 / 3, 2 / 3]]
        return cells + ([[1 / 6, 1 / 6, 1 / 3, 1 / 3]] if not h.fast else [[1.0]])
    cells = [[1.0], [0.5, 0.5], [0.75, 0.25]] + ([[1.0]] if not h.slow else [[0.25, 0.25, 0.5]])
    return cells + ([[0.25] * 4, [0.5, 0.25, 0.25]] if not h.fast else [[0.5, 0.5]])


def bar_rhythm(h: Hands, plain: bool, cadence: bool) -> list[tuple[float, float]]:
    """(offset, length) in beats for one bar of melody; a cadence bar lands and holds."""
    n = h.beats_per_bar
    out, beat, cells = [], 0.0, _cells(h, plain)
    if cadence:  # land and hold; when slow, only for a beat or two, then walk on towards the next phrase
        held = float(min(n, 2) if h.slow else n - 1 if n > 2 and h.rng.random() < 0.5 else n)
        out, beat = [(0.0, held)], held
    while beat < n - 1e-9:
        if beat + 2 <= n and h.rng.random() < (0.08 if h.slow else 0.2):  # a longer note across two beats
            lengths = [2.0] if h.rng.random() < 0.6 else [1.5, 0.5]
        else:
            lengths = cells[int(h.rng.integers(len(cells)))]
        for ln in lengths:
            out.append((beat, ln))
            beat += ln
    return out


def _cadence_bar(i: int, n: int, phrase: int) -> bool:
    """Whether bar ``i`` of ``n`` closes a phrase: phrases are counted back from the section's last bar."""
    return (n - 1 - i) % phrase == 0 and (i >= 2 or i == n - 1)


def melody(slots: list[Slot], h: Hands, tonic: int, mode: str, bars: list[float], plain: bool = False,
           phrase: int = 4) -> list[tuple[float, float, int]]:
    """A right-hand line: stepwise with some leaps (recovered by step), chord tones on strong beats, an arch
    within each phrase, a cadence note closing each phrase. ``bars`` are the bars' first beats."""
    scale = scale_of(mode)
    degree = 7 * ((h.top - tonic) // 12) + 2  # scale steps above the C-1 octave's tonic

    def pitch(d: int, ch: Chord) -> int:
        pc = (tonic + scale[d % 7]) % 12
        # a chord's chromatic tone (the minor key's leading tone, a secondary dominant's) replaces the scale's
        raised = pc not in ch.pcs and (pc + 1) % 12 in ch.pcs and (pc + 1 - tonic) % 12 not in scale
        return tonic + 12 * (d // 7) + scale[d % 7] + int(raised)

    rhythms = [bar_rhythm(h, plain, False) for _ in range(2)]  # a motif and its answer, reused
    out, leap = [], 0
    lo, hi = h.top - 9, h.top + 10
    for i, b0 in enumerate(bars):
        cadence = _cadence_bar(i, len(bars), phrase)
        rhythm = bar_rhythm(h, plain, True) if cadence else rhythms[int(i % 4 == 2)]
        if not cadence and h.rng.random() < 0.25:
            rhythm = bar_rhythm(h, plain, False)
        rise = 1 if (i % phrase) < phrase / 2 else -1  # arch: up to the phrase's middle, then down
        if abs(pitch(degree, chord_at(slots, b0)) - h.top) > 5:  # ... but drawn back to the register's centre
            rise = 1 if pitch(degree, chord_at(slots, b0)) < h.top else -1
        for off, ln in rhythm:
            ch = chord_at(slots, b0 + off)
            on_beat = abs(off - round(off)) < 1e-9
            if off == 0 or (on_beat and h.rng.random() < 0.5):  # strong beats: a nearby chord tone, not the same
                d = min(range(degree - 3, degree + 4), key=lambda d: (
                    abs(d - degree) + 3 * (d == degree) + abs(pitch(d, ch) - h.top) / 4
                    + 9 * (pitch(d, ch) % 12 not in ch.pcs) + 20 * (not lo <= pitch(d, ch) <= hi)))
            elif leap:  # a leap is answered by a step back
                d, leap = degree - int(np.sign(leap)), 0
            else:
                move = int(h.rng.choice([1, 1, 1, 2, 3, 4], p=[0.3, 0.2, 0.15, 0.15, 0.12, 0.08]))
                direction = rise if h.rng.random() < 0.65 else -rise
                d = degree + direction * move
                leap = direction * move if move >= 3 else 0
            if pitch(d, ch) > hi:  # turn back at the edges of the register
                d, leap = min(d, degree) - 1, 0
            elif pitch(d, ch) < lo:
                d, leap = max(d, degree) + 1, 0
            degree = d
            out.append((b0 + off, ln, pitch(d, ch)))
    return out


def scale_runs(slots: list[Slot], h: Hands, tonic: int, mode: str, bars: list[float],
               phrase: int = 4) -> list[tuple[float, float, int]]:
    """Running scales in half pulses from a chord tone, turning at the register's edges; a phrase's last bar
    runs part of the way (most of it when slow) and lands on a held chord tone."""
    scale = scale_of(mode)

    def pitch(d: int) -> int:
        return tonic + 12 * (d // 7) + scale[d % 7]

    degree = 7 * ((h.top - 12 - tonic) // 12)
    direction, step, n = 1, _pulse(h, True), h.beats_per_bar
    out = []
    for i, b0 in enumerate(bars):
        ch = chord_at(slots, b0)
        d = min(range(degree - 3, degree + 4), key=lambda d: abs(d - degree) + 9 * (pitch(d) % 12 not in ch.pcs))
        cadence = _cadence_bar(i, len(bars), phrase)
        run = n if not cadence else n - 1 if h.slow else n // 2
        for k in range(int(round(run / step))):
            if not h.top - 16 <= pitch(d) <= h.top + 14:
                direction = -1 if pitch(d) > h.top else 1
            out.append((b0 + k * step, step, pitch(d)))
            d += direction
        if cadence:
            land = min((near(pc, pitch(d)) for pc in ch.pcs), key=lambda p: abs(p - pitch(d)))
            out.append((b0 + run, float(n - run), land))
        degree = d
    return out
