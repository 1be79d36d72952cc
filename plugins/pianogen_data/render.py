"""Real-piano corpora: MIDI performances rendered with the sampled grand (``pianogen data render``).

Two kinds of input: a folder of MIDI files played as written (``--midi DIR``; a MAESTRO CSV in it keeps its
splits, years and names), or pieces composed here (``--minutes M --seed S``, ``composer.compose``). Either way
the corpus is written in MAESTRO's layout by the plugin's resumable writer (``pianogen_data.corpus.write_corpus``).
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pianogen import MAESTRO_CSV, read_midi
from pianogen.errors import PianogenError
from pianogen.interfaces import Note, Performance
from pianogen_data.corpus import CorpusItem, RenderedPiece, write_corpus
from pianogen_data.corpus import plan as corpus_plan
from pianogen_data.fluidsynth import FluidSynth
from pianogen_data.sampler import Sampler, SamplerConfig

YEAR = 2018  # the report's MAESTRO subset, so `years = [2018]` recipes work on rendered corpora too
SPLITS = ("train", "validation", "test")
MIDI_SUFFIXES = (".mid", ".midi")
PIECE_SECONDS = (30.0, 90.0)  # composed pieces' lengths before they are scaled to fill the minutes


def split_by_name(names: list[str]) -> dict[str, str]:
    """~80/10/10 by a stable hash of each name; with 3 or more names every split gets at least one."""
    u = {n: int.from_bytes(hashlib.sha1(n.encode()).digest()[:8], "big") / 2**64 for n in names}
    n = len(names)
    n_test = sum(v >= 0.9 for v in u.values())
    n_val = sum(0.8 <= v < 0.9 for v in u.values())
    if n >= 3:
        n_test = min(max(1, n_test), n - 2)
        n_val = min(max(1, n_val), n - 1 - n_test)
    ranked = sorted(names, key=lambda name: (u[name], name))  # the thresholds above, as ranks
    n_train = n - n_val - n_test
    return {name: SPLITS[0] if i < n_train else SPLITS[1] if i < n_train + n_val else SPLITS[2]
            for i, name in enumerate(ranked)}


def midi_items(midi_dir: Path) -> list[tuple[CorpusItem, Path]]:
    """(corpus item, its MIDI file) for every MIDI file of ``midi_dir``: a MAESTRO CSV there gives splits,
    years and names, otherwise each file is named after its path and split by a hash of it."""
    if not midi_dir.is_dir():
        raise PianogenError(f"--midi {midi_dir} is not a folder")
    maestro = midi_dir / MAESTRO_CSV
    if maestro.is_file():
        return _maestro_items(midi_dir, maestro)
    files = sorted(p for p in midi_dir.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise PianogenError(f"no .mid/.midi files under {midi_dir}")
    names = {p: p.relative_to(midi_dir).with_suffix("").as_posix().replace("/", "_") for p in files}
    splits = split_by_name(list(names.values()))
    return [(CorpusItem(f"{YEAR}/{names[p]}", splits[names[p]], YEAR, title=p.stem), p) for p in files]


def _maestro_items(midi_dir: Path, csv_path: Path) -> list[tuple[CorpusItem, Path]]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    items, missing = [], []
    for row in rows:
        try:
            stem = str(Path(row["midi_filename"]).with_suffix(""))
            item = CorpusItem(stem, row["split"], int(row["year"]), row["canonical_composer"],
                                       row["canonical_title"])
        except (KeyError, ValueError, TypeError) as err:
            raise PianogenError(f"{csv_path}: a row lacks a usable {err} (MAESTRO v3 columns wanted)") from None
        if item.split not in SPLITS:
            raise PianogenError(f"{csv_path}: split '{item.split}' of {stem} is not one of {SPLITS}")
        path = midi_dir / row["midi_filename"]
        (items if path.is_file() else missing).append((item, path))
    if missing:
        warnings.warn(f"{len(missing)} MIDI file(s) listed in {csv_path} are missing (first: {missing[0][1]}); "
                      "rendering the rest", stacklevel=2)
    if not items:
        raise PianogenError(f"none of the MIDI files listed in {csv_path} is there")
    return items


def humanize(performance: Performance, seed: int) -> Performance:
    """Small human unevenness, deterministic in ``seed``: onsets +-8 ms (the key held as long), velocities +-4."""
    rng = np.random.default_rng([seed, 5])
    notes = []
    for note in performance.notes:
        shift = float(np.clip(rng.normal(0, 0.008), -0.025, 0.025))
        velocity = int(np.clip(round(note.velocity + rng.normal(0, 4)), 1, 127))
        notes.append(Note(max(0.0, note.onset + shift), max(0.0, note.offset + shift), note.pitch, velocity))
    return replace(performance, notes=notes, info={**performance.info, "humanized": seed})


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:4], "big")


def render_corpus(out_dir: Path, *, midi: Path | None = None, minutes: float | None = None, seed: int = 0,
                  humanized: bool = False, config: SamplerConfig | None = None, samples_root: Path | None = None,
                  soundfont: Path | None = None, progress: bool = True, music: str = "pieces") -> Path:
    """Render MIDI files (``midi``) or ``minutes`` of composed ``music`` (pieces, ``composer.compose``, or
    ring-outs, ``ring_outs.ring_outs``) into ``out_dir`` (MAESTRO layout), resumably. The sampler is loaded on
    the first piece that needs rendering, so asking again is free.
    ``soundfont``: play them with FluidSynth and that soundfont instead (another piano, for evaluation)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a voice is a few short vector ops: extra threads only sync (3x slower on 2 cores)
    try:
        return _render_corpus(out_dir, midi, minutes, seed, humanized, config, samples_root, soundfont, progress,
                              music)
    finally:
        torch.set_num_threads(threads)


def _render_corpus(out_dir: Path, midi: Path | None, minutes: float | None, seed: int, humanized: bool,
                   config: SamplerConfig | None, samples_root: Path | None, soundfont: Path | None,
                   progress: bool, music: str) -> Path:
    player: list[Sampler | FluidSynth] = []

    def play(performance: Performance) -> np.ndarray:
        if not player:
            player.append(FluidSynth(soundfont) if soundfont else Sampler.salamander(samples_root, config, progress))
        return player[0].render(performance)

    if midi is not None:
        files = dict(midi_items(Path(midi)))

        def render(item: CorpusItem) -> RenderedPiece:
            performance = read_midi(files[item])
            if not performance.notes:
                raise PianogenError(f"{files[item]}: no notes")
            if humanized:
                performance = humanize(performance, _stable_seed(seed, item.stem))
            return RenderedPiece(play(performance), performance)

        return write_corpus(out_dir, list(files), render, label="rendering MIDI", progress=progress,
                                     skip_bad=True)
    if minutes is None:
        raise PianogenError("data render needs --midi DIR (MIDI files to play) or --minutes M (pieces to compose)")
    from pianogen_data.composer import compose
    from pianogen_data.ring_outs import ring_outs

    composers = {"pieces": (compose, "Rendered"), "ring_outs": (ring_outs, "RingOuts")}
    if music not in composers:
        raise PianogenError(f"music must be one of {', '.join(composers)}, got {music!r}")
    write, name = composers[music]
    pieces = corpus_plan(minutes, seed, PIECE_SECONDS)
    items = [CorpusItem(f"{YEAR}/PianoGen-{name}_s{seed}_{i:03d}", split, YEAR, "PianoGen Composer")
             for i, (_, split) in enumerate(pieces)]
    lengths = {item: seconds for item, (seconds, _) in zip(items, pieces)}

    def compose_and_render(item: CorpusItem) -> RenderedPiece:
        i = items.index(item)
        performance = write(_stable_seed(seed, i), lengths[item])
        title = f"{performance.info.get('title', 'Piece')} (No. {i + 1})"
        return RenderedPiece(play(performance), performance, title)

    return write_corpus(out_dir, items, compose_and_render, label=f"rendering {music.replace('_', '-')}",
                        progress=progress)
