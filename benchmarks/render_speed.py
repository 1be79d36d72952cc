"""The sampled grand (``pianogen data render``) against fluidsynth on the same MIDI, x real time on one core.

    nice -n 15 python benchmarks/render_speed.py [--seconds 60] [--repeats 3] [--append benchmarks/RESULTS.md]

Two performances: a dense texture (10 notes/s over five octaves, velocities 30-110, sustain pedal changed
every 2 s) and a piece from the composer (``pianogen_data.composer.compose``). Each is written as a MIDI file,
rendered by our sampler (one torch thread, the Salamander samples it needs already decoded, best of
``--repeats``) and by ``fluidsynth -ni -F out.wav -r 44100 TimGM6mb.sf2 in.mid`` (single-threaded, best of
``--repeats``). Speeds are audio seconds per CPU second of the renderer (``time.process_time`` for ours, the
child's rusage for fluidsynth), so other jobs on a shared machine do not count; wall-clock speeds beside.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from pianogen_data.composer import compose
from pianogen_data.sampler import Sampler

import pianogen
from pianogen.interfaces import Note, Performance

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def dense_texture(seconds: float, seed: int = 0) -> Performance:
    """10 notes/s, pitches 36-96, held 0.1-0.8 s, pedal down for each 2 s harmony (lifted 50 ms between)."""
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, seconds, int(10 * seconds)))
    notes = [Note(float(t), float(t + rng.uniform(0.1, 0.8)), int(rng.integers(36, 97)), int(rng.integers(30, 111)))
             for t in onsets]
    sustain = [e for bar in np.arange(0, seconds, 2.0) for e in ((float(bar) + 0.05, 127), (float(bar) + 2.0, 0))]
    return Performance(notes, sustain)


def ours(sampler: Sampler, performance: Performance, repeats: int) -> tuple[float, float, float]:
    """(audio seconds, best CPU seconds, best wall seconds) of our render."""
    audio = sampler.render(performance).shape[1] / 44100  # decodes the samples it needs, once
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        sampler.render(performance)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return audio, min(cpu), min(wall)


def fluidsynth(midi: Path, out: Path, repeats: int) -> tuple[float, float, float]:
    cpu, wall = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w = time.perf_counter()
        subprocess.run(["fluidsynth", "-ni", "-F", str(out), "-r", "44100", str(SOUNDFONT), str(midi)],
                       check=True, capture_output=True)
        wall.append(time.perf_counter() - w)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return sf.info(str(out)).duration, min(cpu), min(wall)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--append", type=Path, default=None, help="append the rows to this RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not shutil.which("fluidsynth") or not SOUNDFONT.is_file():
        raise SystemExit("needs Debian's fluidsynth and fluid-soundfont-gm/TimGM6mb (make system)")
    started = time.process_time()
    sampler = Sampler.salamander()
    performances = {"dense texture": dense_texture(args.seconds), "composer piece": compose(7, args.seconds)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, performance in performances.items():
            midi = Path(tmp) / "in.mid"
            pianogen.write_midi(performance, midi)
            performance = pianogen.read_midi(midi)  # both renderers play the same file
            rate = len(performance.notes) / performance.duration
            for renderer, (audio, cpu, wall) in (("sampler (ours)", ours(sampler, performance, args.repeats)),
                                                 ("fluidsynth", fluidsynth(midi, Path(tmp) / "out.wav",
                                                                           args.repeats))):
                rows.append(f"| {name} ({rate:.1f} notes/s) | {renderer} | {audio:.1f} | {audio / cpu:.0f}x | "
                            f"{audio / wall:.0f}x |")
    loaded = sum(t.numel() * t.element_size() for t in sampler.cache.values()) / 2**20
    table = "\n".join(["| performance | renderer | audio s | x real time (CPU) | x real time (wall) |",
                       "|---|---|---|---|---|", *rows])
    note = (f"Samples decoded on first use: {len(sampler.cache)} files, {loaded:.0f} MiB in memory (float16); "
            f"whole run {time.process_time() - started:.0f} CPU s. Machine: {cpu_model()} ({platform.machine()}), "
            "torch threads 1, shared with other jobs.")
    print(table)
    print(note)
    if args.append:
        with open(args.append, "a") as f:
            f.write(f"\n## Rendering MIDI: the sampled grand vs fluidsynth (`python benchmarks/render_speed.py`, "
                    f"{time.strftime('%Y-%m-%d')})\n\n{table}\n\n{note}\n")


if __name__ == "__main__":
    main()
