"""How well the `basic_pitch` transcriber hears piano: MIDI performances written here, rendered by Debian's
fluidsynth with TimGM6mb (a General MIDI sampled piano), transcribed, and scored against the MIDI with
mir_eval: note F1 with onsets within 50 ms (offsets ignored), the same with offsets (within 20% of the note
or 50 ms), the median onset error of matched notes, and the speed in times real time.

    python benchmarks/transcriber_accuracy.py [--seed 0] [--threads 0]

Four pieces, about 60 s: a two-octave C-major scale up and down, a triad progression with bass, fast broken
chords, and a seeded two-hand texture (melody over a walking bass, overlapping notes, velocities 40-110).
Prints a markdown table (one row per piece, one for all).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pianogen_data.fluidsynth import render_notes as render_fluidsynth

import pianogen
from pianogen.evaluation.notes import note_f1, note_f1_with_offsets
from pianogen.interfaces import Note

SAMPLE_RATE = 44100
MAJOR = [0, 2, 4, 5, 7, 9, 11]


def scale() -> list[Note]:
    """C4..C6 and back, eighth notes at 120 bpm, velocity 80."""
    up = [60 + 12 * (i // 7) + MAJOR[i % 7] for i in range(14)] + [84]
    pitches = up + up[-2::-1]
    return [Note(0.2 + 0.25 * i, 0.2 + 0.25 * i + 0.23, p, 80) for i, p in enumerate(pitches)]


def chords() -> list[Note]:
    """I IV V vi ii V I in C, three times: a root-position triad over the bass an octave down, 1 s each."""
    roots = [0, 5, 7, 9, 2, 7, 0] * 2 + [5, 7]
    out = []
    for i, root in enumerate(roots):
        third = 3 if root in (2, 9) else 4
        t = 0.2 + i * 1.0
        out += [Note(t, t + 0.9, 48 + root, 70)] + [Note(t, t + 0.9, 60 + root + d, 75) for d in (0, third, 7)]
    return out


def broken_chords() -> list[Note]:
    """Sixteenth notes at 120 bpm (0.125 s), arpeggios of C, Am, F, G over two octaves, each note held 0.3 s."""
    out, t = [], 0.2
    for root, third in [(0, 4), (9, 3), (5, 4), (7, 4)] * 2:
        for p in [48, 52, 55, 60, 64, 67, 72, 67, 64, 60, 55, 52]:
            shape = {48: 0, 52: third, 55: 7, 60: 12, 64: 12 + third, 67: 19, 72: 24}[p]
            out.append(Note(t, t + 0.3, 48 + root + shape, 72))
            t += 0.125
    return out


def texture(seed: int, seconds: float = 30.0) -> list[Note]:
    """A seeded two-hand texture: a melody in quarter to sixteenth notes with occasional dyads, over a bass
    note every half second, notes overlapping like a legato or a light pedal; velocities 40-110."""
    rng = np.random.default_rng(seed)
    out, t, pitch = [], 0.2, 72
    while t < seconds:
        pitch = int(np.clip(pitch + rng.choice([-4, -3, -2, -1, 1, 2, 3, 4, 7]), 60, 91))
        step = float(rng.choice([0.125, 0.25, 0.25, 0.5]))
        velocity = int(rng.integers(40, 111))
        out.append(Note(t, t + step * float(rng.uniform(0.8, 1.6)), pitch, velocity))
        if rng.random() < 0.2:
            out.append(Note(t, t + step, max(pitch - int(rng.choice([3, 4, 5])), 55), velocity - 10))
        t += step
    for b in np.arange(0.2, seconds, 0.5):
        out.append(Note(float(b), float(b) + 0.6, int(rng.choice([36, 38, 40, 41, 43, 45, 47, 48])),
                        int(rng.integers(50, 90))))
    return sorted(out, key=lambda n: (n.onset, n.pitch))


def onset_error_ms(reference: list[Note], estimate: list[Note]) -> float:
    """Median (estimated - reference) onset of the notes note_f1 matches, in ms."""
    from mir_eval.transcription import match_notes

    from pianogen.evaluation.notes import _intervals_and_hz

    ref_i, ref_hz = _intervals_and_hz(reference)
    est_i, est_hz = _intervals_and_hz(estimate)
    pairs = match_notes(ref_i, ref_hz, est_i, est_hz, onset_tolerance=0.05, offset_ratio=None)
    return float(np.median([est_i[e, 0] - ref_i[r, 0] for r, e in pairs]) * 1000) if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = up to 4)")
    args = parser.parse_args()
    transcriber = pianogen.get_transcriber("basic_pitch", threads=args.threads)
    pieces = {"C-major scale": scale(), "triads + bass": chords(), "broken chords (16ths)": broken_chords(),
              f"two-hand texture (seed {args.seed})": texture(args.seed)}
    rows, everything = [], {"ref": [], "est": [], "seconds": 0.0, "wall": 0.0, "cpu": 0.0}
    for name, notes in pieces.items():
        wav = render_fluidsynth(notes, SAMPLE_RATE)
        seconds = wav.numel() / SAMPLE_RATE
        transcriber.transcribe(wav[:SAMPLE_RATE], SAMPLE_RATE)  # warm: the session is loaded once per process
        wall, cpu = time.perf_counter(), time.process_time()
        heard = transcriber.transcribe(wav, SAMPLE_RATE)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        onset, full = note_f1(notes, heard), note_f1_with_offsets(notes, heard)
        rows.append([name, len(notes), len(heard), seconds, onset, full, onset_error_ms(notes, heard),
                     seconds / wall, seconds / cpu])
        offset = everything["seconds"]
        everything["ref"] += [Note(n.onset + offset, n.offset + offset, n.pitch, n.velocity) for n in notes]
        everything["est"] += [Note(n.onset + offset, n.offset + offset, n.pitch, n.velocity) for n in heard]
        everything["seconds"] += seconds
        everything["wall"] += wall
        everything["cpu"] += cpu
    e = everything
    rows.append(["all", len(e["ref"]), len(e["est"]), e["seconds"], note_f1(e["ref"], e["est"]),
                 note_f1_with_offsets(e["ref"], e["est"]), onset_error_ms(e["ref"], e["est"]),
                 e["seconds"] / e["wall"], e["seconds"] / e["cpu"]])
    print("| piece | notes | heard | seconds | onset P / R / F1 | with offsets F1 | median onset error | "
          "× real time (wall) | × real time (CPU time) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n_ref, n_est, seconds, onset, full, error, wall_x, cpu_x in rows:
        print(f"| {name} | {n_ref} | {n_est} | {seconds:.1f} | {onset['precision']:.3f} / {onset['recall']:.3f} / "
              f"**{onset['f1']:.3f}** | {full['f1']:.3f} | {error:+.1f} ms | {wall_x:.0f} | {cpu_x:.0f} |")


if __name__ == "__main__":
    main()
