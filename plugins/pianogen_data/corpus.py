"""Writing a corpus in MAESTRO's layout, resumably: the one mechanism behind ``data synth`` and ``data render``.

A corpus is a list of ``CorpusItem`` (where a piece goes, its split, year, names) and a function that renders
one item to stereo audio and the performance played. ``write_corpus`` renders into a temp sibling of the
output folder (``.<name>.tmp<pid>``), every file atomically (MIDI, then a row of metadata, then the WAV
last, so a WAV on disk means the piece is done), writes the CSV and renames the folder into place: the output
folder is complete or absent. A killed run leaves its temp folder; the next run adopts the finished pieces
of temp folders whose process is gone, so no rendered piece is ever rendered twice. Asking again for a
corpus that is already there renders nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pianogen import MAESTRO_COLUMNS, MAESTRO_CSV, atomic_write_bytes, pid_alive, progress_bar, save_audio, write_midi
from pianogen.errors import PianogenError
from pianogen.interfaces import Performance

SAMPLE_RATE = 44100
CSV_NAME, CSV_COLUMNS = MAESTRO_CSV, MAESTRO_COLUMNS
ROWS_DIR = ".rows"  # per-piece CSV rows of a corpus being written (removed before it is renamed into place)


@dataclass(frozen=True)
class CorpusItem:
    """One piece to write: ``stem`` is its path in the corpus without suffix, e.g. ``2018/Piece_000``."""

    stem: str
    split: str
    year: int
    composer: str = ""
    title: str = ""  # the render may name the piece itself (RenderedPiece.title)


@dataclass
class RenderedPiece:
    wav: np.ndarray  # float32 [2, S] at SAMPLE_RATE
    performance: Performance  # what was played: written as the piece's MIDI file
    title: str = ""  # overrides the item's title when set


def plan(minutes: float, seed: int, seconds: tuple[float, float] = (20.0, 60.0)) -> list[tuple[float, str]]:
    """(seconds, split) per piece of a composed corpus: pieces of ``seconds`` (lo, hi) rescaled to fill
    ``minutes`` exactly, ~10 % validation and ~10 % test, at least one piece in every split."""
    if minutes <= 0:
        raise PianogenError(f"data.minutes must be > 0, got {minutes}")
    rng = np.random.default_rng([seed, 0])
    total = minutes * 60
    n = max(3, round(total / (sum(seconds) / 2)))
    secs = rng.uniform(seconds[0], seconds[1], n)
    secs *= total / secs.sum()
    n_eval = max(1, round(0.1 * n))
    splits = ["test"] * n_eval + ["validation"] * n_eval + ["train"] * (n - 2 * n_eval)
    assigned = np.empty(n, object)
    assigned[rng.permutation(n)] = splits
    return [(float(secs[i]), str(assigned[i])) for i in range(n)]


def write_corpus(out_dir: Path, items: list[CorpusItem], render: Callable[[CorpusItem], RenderedPiece], *,
                 label: str = "rendering", progress: bool = True, skip_bad: bool = False) -> Path:
    """Render every item not yet rendered into ``out_dir`` (MAESTRO layout); returns ``out_dir``.

    ``skip_bad``: an item whose render raises PianogenError is named in one warning and left out."""
    out_dir = Path(out_dir)
    stems = [item.stem for item in items]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise PianogenError(f"two pieces would both be written as {twice[0]}; rename one of them")
    if (out_dir / CSV_NAME).is_file():
        _check_complete(out_dir, items)
        return out_dir  # already written: nothing to render
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PianogenError(f"{out_dir} already exists and is not empty; remove it or choose another directory")
    tmp = out_dir.parent / f".{out_dir.name}.tmp{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    adopt_stale_temp_dirs(out_dir, tmp)
    rows = _render_items(tmp, items, render, label, progress, skip_bad)
    if not rows:
        raise PianogenError(f"nothing to write to {out_dir}: no piece could be rendered")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # csv's default ending, as the synthetic corpus always had
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    atomic_write_bytes(tmp / CSV_NAME, buffer.getvalue().encode())
    shutil.rmtree(tmp / ROWS_DIR, ignore_errors=True)
    try:
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); rename cannot replace it portably
        os.rename(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out_dir / CSV_NAME).exists():  # not merely lost a race to another writer of the same corpus
            raise
    return out_dir


def _check_complete(out_dir: Path, items: list[CorpusItem]) -> None:
    with open(out_dir / CSV_NAME, newline="") as f:
        listed = {row.get("audio_filename") for row in csv.DictReader(f)}
    lacking = [item.stem for item in items if f"{item.stem}.wav" not in listed]
    if lacking and len(lacking) == len(items):
        raise PianogenError(f"{out_dir} already holds another corpus; remove it or choose another directory")
    if lacking:  # pieces it skipped (bad files) are named once more, not rendered into a finished corpus
        warnings.warn(f"{out_dir} is complete without {len(lacking)} piece(s) (first: {lacking[0]})", stacklevel=3)


def _render_items(tmp: Path, items: list[CorpusItem], render: Callable[[CorpusItem], RenderedPiece], label: str,
                  progress: bool, skip_bad: bool) -> list[list[str]]:
    rows, audio_s, render_s = [], 0.0, 0.0
    with progress_bar(progress, info=True, transient=True) as bar:
        task = bar.add_task(label, total=len(items), info="")
        for item in items:
            row_path = tmp / ROWS_DIR / (item.stem.replace("/", "__") + ".json")
            wav_path = tmp / f"{item.stem}.wav"
            if not (wav_path.is_file() and row_path.is_file()):  # finished pieces (adopted or ours) stay
                started = time.perf_counter()
                try:
                    piece = render(item)
                except PianogenError as err:
                    if not skip_bad:
                        raise
                    warnings.warn(f"skipping {item.stem}: {err}", stacklevel=2)
                    bar.update(task, advance=1)
                    continue
                write_midi(piece.performance, tmp / f"{item.stem}.midi")
                duration = piece.wav.shape[1] / SAMPLE_RATE
                row = [item.composer, piece.title or item.title, item.split, str(item.year), f"{item.stem}.midi",
                       f"{item.stem}.wav", f"{duration:.6f}"]
                atomic_write_bytes(row_path, json.dumps(row).encode())
                save_audio(wav_path, piece.wav, SAMPLE_RATE)  # last: a WAV on disk means the piece is done
                render_s += time.perf_counter() - started
                audio_s += duration
            rows.append(json.loads(row_path.read_text()))
            speed = f"{audio_s / render_s:.0f}x real time" if render_s else ""
            bar.update(task, advance=1, info=f"{item.stem.rsplit('/', 1)[-1]}  {speed}")
    return rows


def adopt_stale_temp_dirs(out_dir: Path, tmp: Path) -> None:
    """Move the finished files of killed writers of ``out_dir`` (temp folders whose pid is gone) into ``tmp``
    and remove their folders. Files are written atomically, so every file under its final name is whole;
    half-written ones (``.<name>.tmp<pid>``) are dropped with their folder."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp*"):
        pid = stale.name.rpartition(".tmp")[2]
        if stale == tmp or not pid.isdigit() or pid_alive(int(pid)):
            continue
        for path in sorted(stale.rglob("*")):
            rel = path.relative_to(stale)
            half_written = path.name.startswith(".") and ".tmp" in path.name
            if path.is_file() and not half_written and not (tmp / rel).exists():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, tmp / rel)
        shutil.rmtree(stale, ignore_errors=True)

