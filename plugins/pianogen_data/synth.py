"""A synthetic piano corpus in MAESTRO's layout, for demos and tests without a 100 GB download.

Each piece is composed (key, chord progression, accompaniment pattern, melody, phrase dynamics,
sustain pedal), written as a standard MIDI file, and rendered with a vectorised additive piano
model: inharmonic partials f_n = n f0 sqrt(1 + B n^2), two-stage per-partial decay, brightness
rising with velocity, a hammer-noise thump, unison beating and damper release. Deterministic
given (minutes, seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pianogen.interfaces import Note, Performance
from pianogen_data import corpus
from pianogen_data.corpus import CSV_COLUMNS, CSV_NAME, SAMPLE_RATE, CorpusItem, RenderedPiece, plan

__all__ = ["CSV_COLUMNS", "CSV_NAME", "SAMPLE_RATE", "compose", "performance", "plan", "render", "write_corpus"]
YEAR = 2018  # the report's MAESTRO subset, so `years = [2018]` recipes work on synthetic data too
NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 11]}  # harmonic minor: a real V chord
PROGRESSIONS = {  # scale-degree roots (0 = tonic), one chord a bar
    "major": [[0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 1, 4], [5, 1, 4, 0], [0, 4, 5, 3]],
    "minor": [[0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 6, 2], [0, 6, 5, 4]],
}
RHYTHMS = {  # melody rhythms for one bar, in beats
    4: [[1, 1, 1, 1], [2, 1, 1], [1.5, 0.5, 1, 1], [0.5] * 8, [1, 0.5, 0.5, 2], [3, 1], [0.5, 0.5, 1, 0.5, 0.5, 1]],
    3: [[1, 1, 1], [2, 1], [1.5, 0.5, 1], [0.5] * 6, [3], [1, 0.5, 0.5, 1]],
}
BLOCK = 256  # samples per envelope segment (envelopes are linear inside one, exact at its ends)


@dataclass
class Score:
    """A composed piece: notes as rows (onset s, release s, MIDI pitch, velocity), pedal (down s, up s)."""

    title: str
    bpm: float
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)
    pedal: list[tuple[float, float]] = field(default_factory=list)


def _pitch(tonic: int, scale: list[int], degree: int, octave_base: int) -> int:
    return octave_base + tonic + scale[degree % 7] + 12 * (degree // 7)


def compose(rng: np.random.Generator, seconds: float) -> Score:
    """A piece of about ``seconds``: melody over a patterned accompaniment, phrase by phrase."""
    tonic, mode = int(rng.integers(12)), str(rng.choice(["major", "minor"]))
    meter = int(rng.choice([3, 4, 4]))
    bpm = float(rng.uniform(66, 132))
    beat = 60.0 / bpm
    scale = SCALES[mode]
    style = str(rng.choice(["block", "alberti", "arpeggio", "waltz" if meter == 3 else "arpeggio"]))
    kind = {"block": "Chorale", "alberti": "Sonatina", "arpeggio": "Etude", "waltz": "Waltz"}[style]
    score = Score(f"{kind} in {NAMES[tonic]} {mode}", bpm)
    n_bars = max(2, int((seconds - 2.5) / (meter * beat)))
    progs = [PROGRESSIONS[mode][i] for i in rng.choice(len(PROGRESSIONS[mode]), 2, replace=False)]
    form = "AABA"
    level = {"A": float(rng.uniform(55, 75)), "B": float(rng.uniform(70, 95))}
    degree = 7 + int(rng.integers(0, 5))  # melody position in scale degrees above the tonic at C4
    for bar in range(n_bars):
        section = form[(bar // 4) % 4]
        root = progs[int(section == "B")][bar % 4] if bar < n_bars - 1 else 0  # always end on the tonic
        t0 = bar * meter * beat
        phrase_pos = (bar % 4 + 0.5) / 4
        dyn = level[section] * (0.8 + 0.3 * np.sin(np.pi * phrase_pos))  # swell within each phrase
        chord = [root, root + 2, root + 4]

        def add(onset: float, dur: float, pitch: int, vel: float) -> None:
            jitter = float(rng.normal(0, 0.006))  # a human never plays exactly on the grid
            v = int(np.clip(vel + rng.normal(0, 4), 12, 124))
            score.notes.append((max(0.0, onset + jitter), onset + jitter + dur, int(np.clip(pitch, 21, 108)), v))

        acc = dyn - 16  # the accompaniment sits under the melody
        bass = _pitch(tonic, scale, root, 36)
        if bar == n_bars - 1:  # final tonic chord, held
            for d in chord:
                add(t0, meter * beat * 1.5, _pitch(tonic, scale, d, 48), acc)
            add(t0, meter * beat * 1.5, bass, acc + 4)
            add(t0, meter * beat * 1.5, _pitch(tonic, scale, 7, 60), dyn)
            score.pedal.append((t0 + 0.02, t0 + meter * beat * 1.6))
            break
        if style == "alberti":  # low-high-mid-high in eighths, no pedal
            order = [0, 2, 1, 2]
            for i in range(meter * 2):
                add(t0 + i * beat / 2, beat / 2, _pitch(tonic, scale, chord[order[i % 4]], 48), acc - 4 * (i % 2))
        else:
            add(t0, meter * beat, bass, acc + 6)
            score.pedal.append((t0 + 0.03, t0 + meter * beat - 0.04))  # change pedal with each harmony
            if style == "block":
                for b in range(1, meter):
                    for d in chord:
                        add(t0 + b * beat, beat * 0.9, _pitch(tonic, scale, d, 48), acc)
            elif style == "waltz":
                for b in (1, 2):
                    for d in chord:
                        add(t0 + b * beat, beat * 0.6, _pitch(tonic, scale, d, 52), acc - 6)
            else:  # arpeggio up and down over two octaves in sixteenths
                tones = [root + k for k in (0, 2, 4, 7, 9, 11, 14)]
                seq = tones + tones[-2:0:-1]
                for i in range(meter * 4):
                    add(t0 + i * beat / 4, beat / 4, _pitch(tonic, scale, seq[i % len(seq)], 36), acc - 8)
        # melody: a scale run now and then, otherwise a stepwise walk landing on chord tones
        if rng.random() < 0.12 and bar % 4 != 3:
            step = int(rng.choice([-1, 1]))
            for i in range(meter * 4):
                degree = int(np.clip(degree + step, 3, 18))
                add(t0 + i * beat / 4, beat / 4, _pitch(tonic, scale, degree, 60), dyn - 4 + 8 * i / (meter * 4))
            continue
        rhythm = RHYTHMS[meter][int(rng.integers(len(RHYTHMS[meter])))] if bar % 4 != 3 else [meter - 1, 1]
        t = t0
        for i, dur in enumerate(rhythm):
            if i == 0:  # strong beat: nearest chord tone
                targets = [c + 7 * o for c in chord for o in (0, 1, 2)]
                degree = min(targets, key=lambda d: abs(d - degree))
            else:
                degree += int(rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree, 3, 18))
            accent = 8 if i == 0 else 0
            add(t, dur * beat * 0.95, _pitch(tonic, scale, degree, 60), dyn + accent)
            t += dur * beat
    return score


def _sounding_end(off: float, pedal: list[tuple[float, float]]) -> float:
    """A key released while the pedal is down keeps sounding until the pedal comes up."""
    for down, up in pedal:
        if down <= off < up:
            return up
    return off


def render_note(pitch: int, velocity: int, hold: float, rng: np.random.Generator,
                sr: int = SAMPLE_RATE) -> np.ndarray:
    """One piano note, float32[L]: ``hold`` seconds until the damper falls, then a short release."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    v = velocity / 127
    inharm = 1e-4 * 2 ** ((pitch - 60) / 15)  # B grows toward the treble (short, stiff strings)
    n = np.arange(1, 33)
    fn = n * f0 * np.sqrt(1 + inharm * n**2)
    keep = fn < min(0.45 * sr, 12000.0)
    n, fn = n[keep], fn[keep]
    amp = n ** -(2.8 - 1.6 * v) * (np.abs(np.sin(np.pi * n / 7.3)) + 0.08)  # hammer at ~1/7 of the string
    tau = 12.0 * 2 ** (-(pitch - 21) / 20) / (1 + 0.05 * (n - 1) ** 1.6)  # per-partial aftersound decay
    tau_release = 0.07
    length = int(sr * min(hold + 6 * tau_release, 7 * tau[0], 10.0)) + 1
    m = -(-length // BLOCK)
    tb = np.arange(m + 1) * (BLOCK / sr)  # block edges, seconds
    env = amp[:, None] * (0.65 * np.exp(-tb / (0.2 * tau[:, None])) + 0.35 * np.exp(-tb / tau[:, None]))
    env *= 1 + 0.12 * np.cos(2 * np.pi * rng.uniform(0.3, 1.5) * tb)  # unison strings beating
    env *= np.exp(-np.maximum(tb - hold, 0) / tau_release)  # damper
    # Partials summed as matrix products: with block start phase a and in-block phase b,
    # sin(a + b) = sin a cos b + cos a sin b, and the envelope is e0 + de * ramp inside a block.
    w = 2 * np.pi * fn / sr
    a = np.outer(w, np.arange(m) * BLOCK) + rng.uniform(0, 2 * np.pi, (len(n), 1))
    sa, ca = np.sin(a), np.cos(a)
    e0, de = env[:, :-1], env[:, 1:] - env[:, :-1]
    u = np.concatenate([np.concatenate([e0 * sa, e0 * ca]), np.concatenate([de * sa, de * ca])], axis=1)
    b = np.outer(w, np.arange(BLOCK))
    y = u.T.astype(np.float32) @ np.concatenate([np.cos(b), np.sin(b)]).astype(np.float32)  # [2m, BLOCK]
    x = (y[:m] + y[m:] * (np.arange(BLOCK, dtype=np.float32) / BLOCK)).reshape(-1)[:length]
    k = min(length, int(0.03 * sr))  # attack and hammer thump live in the first 30 ms
    t = np.arange(k) / sr
    x[:k] *= (1 - np.exp(-t / (0.004 - 0.003 * v))).astype(np.float32)  # harder strokes speak faster
    width = int(8 - 6 * v)  # thump: low-passed noise, louder and brighter when hit hard
    noise = np.convolve(rng.standard_normal(k), np.ones(width) / width, "same")
    x[:k] += (0.15 * v * noise * np.exp(-t / 0.006)).astype(np.float32)
    return x * np.float32(v**1.7)


def render(score: Score, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mix the score's notes to stereo float32[2, S] (pan by pitch, a few early reflections)."""
    notes = [(on, _sounding_end(off, score.pedal), p, v) for on, off, p, v in score.notes]
    total = int(sr * (max(on for on, *_ in notes) + 2.5))
    out = np.zeros((2, total), np.float32)
    for on, end, pitch, vel in notes:
        x = render_note(pitch, vel, end - on, rng, sr)
        s = int(on * sr)
        x = x[: total - s]
        angle = (0.3 + 0.4 * (pitch - 21) / 87) * np.pi / 2  # bass left, treble right, as a player hears it
        out[0, s:s + len(x)] += np.cos(angle) * x
        out[1, s:s + len(x)] += np.sin(angle) * x
    for ms, gain in ((11, 0.22), (19, 0.16), (29, 0.11), (43, 0.07)):  # a small room
        d = int(sr * ms / 1000)
        out[:, d:] += gain * out[::-1, :-d]
    last = int(sr * (max(end for _, end, _, _ in notes) + 1.5))
    out = out[:, :min(total, last)]
    return out * np.float32(0.8 / max(np.abs(out).max(), 1e-6))


def performance(score: Score) -> Performance:
    """The score as a ``Performance`` (its MIDI file is written from this): notes, pedal presses as CC64."""
    sustain = sorted([(down, 127) for down, _ in score.pedal] + [(up, 0) for _, up in score.pedal])
    return Performance([Note(on, off, pitch, vel) for on, off, pitch, vel in score.notes], sustain,
                       info={"title": score.title, "bpm": score.bpm})


def write_corpus(out_dir: Path, minutes: float, seed: int, progress: bool = True) -> Path:
    """Compose and render ``minutes`` of piano into ``out_dir`` (MAESTRO layout: CSV, <year>/*.wav + .midi),
    resumably (``pianogen_data.corpus.write_corpus``)."""
    pieces = plan(minutes, seed)
    items = [CorpusItem(f"{YEAR}/PianoGen-Synth_s{seed}_{i:03d}", split, YEAR, "PianoGen Synth")
             for i, (_, split) in enumerate(pieces)]

    def render_item(item: CorpusItem) -> RenderedPiece:
        i = items.index(item)
        rng = np.random.default_rng([seed, i + 1])
        score = compose(rng, pieces[i][0])
        return RenderedPiece(render(score, rng), performance(score), f"{score.title} (No. {i + 1})")

    return corpus.write_corpus(out_dir, items, render_item, label="synthesising piano", progress=progress)
