"""``pianogen eval RUN --corpus DIR``: score a run on another corpus than the one its recipe trained on.

The corpus replaces the run's ``[data]`` source only: a folder in MAESTRO's layout (a ``maestro-v3.0.0.csv``
beside the audio, as ``pianogen data render`` writes) is read by the ``maestro`` source with its splits, any
other folder by the ``folder`` source (split by a hash of each file's path), and a registered data source's name
(``salamander``) by that source with its defaults. The run's chunking and window keys are kept, so the corpus is
tokenized exactly as the run's own was; its tokens go to the shared cache under $PIANOGEN_HOME, keyed by the
corpus's settings, never into the run. The token floors (unigram, repeat) are still fitted on the run's own
training tokens: the model and its floors learned from the same data and face the same unheard corpus.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError, closest

SPLITS = ("train", "validation", "test")
ALL = "all"  # every piece of a corpus the run never heard, whatever its split


@dataclasses.dataclass(frozen=True)
class Corpus:
    """What ``--corpus`` named, as a ``[data]`` table for the run's recipe."""

    name: str  # the folder's or the source's name: the default output folder is RUN/eval-<name>
    table: dict[str, Any]  # {"source": ..., "root": ...}: the source keys that replace the run's


def corpus_table(spec: str | Path) -> Corpus:
    """A folder (MAESTRO layout, else plain audio) wins, else a registered data source's name; else one line."""
    from pianogen import MAESTRO_CSV
    from pianogen.registry import registered

    path = Path(spec).expanduser()
    if path.is_dir():
        source = "maestro" if (path / MAESTRO_CSV).is_file() else "folder"
        return Corpus(path.resolve().name, {"source": source, "root": str(path.resolve())})
    names = sorted(n for n in registered("data_source") if n != "mix")
    if str(spec) in names:
        return Corpus(str(spec), {"source": str(spec)})
    if path.exists():
        raise PianogenError(f"--corpus {spec} is a file; give a folder of audio (MAESTRO layout or plain) or a "
                            f"data source's name ({', '.join(names)})")
    raise PianogenError(f"--corpus {spec}: no such folder, nor a data source{closest(str(spec), names)}; "
                        f"data sources: {', '.join(names)}")


def with_corpus(recipe: Any, corpus: Corpus) -> Any:
    """The run's recipe reading ``corpus`` instead of its own data: the host's keys (chunking, window, workers,
    strictness) kept, the source's keys replaced."""
    from pianogen.recipe_data import HOST_KEYS, data_table

    host = {key: getattr(recipe.data, key) for key in HOST_KEYS if key != "source"}
    return dataclasses.replace(recipe, data=data_table({**host, **corpus.table}))


def check_split(pieces: list[Any], split: str, where: str) -> None:
    """One line naming the splits ``where`` has, when ``split`` holds none of its ``pieces`` (each with .split
    or ["split"])."""
    splits = Counter(p["split"] if isinstance(p, dict) else p.split for p in pieces)
    if (split == ALL and pieces) or splits[split]:
        return
    has = ", ".join(f"{s} ({splits[s]} pieces)" for s in sorted(splits, key=_split_order)) or "no pieces at all"
    hint = f"; --split {ALL} scores every piece of a corpus the run never heard" if where.startswith("corpus") else ""
    raise PianogenError(f"the {where} has no '{split}' pieces; its splits: {has}{hint}")


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


class AllSplits:
    """A token cache whose pieces all answer to the split "all" (and each to its own split as before)."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.frame_rate = cache.frame_rate
        self.levels = cache.levels

    def pieces(self, split: str | None = None) -> list[dict[str, Any]]:
        return self.cache.pieces(None if split == ALL else split)

    def codes(self, piece: dict[str, Any]) -> Any:
        return self.cache.codes(piece)


def default_out_name(corpus: Corpus) -> str:
    """``eval-<corpus name>``: beside the run's own ``eval``, never over it."""
    return "eval-" + (re.sub(r"[^A-Za-z0-9._+-]+", "_", corpus.name).strip("._") or "corpus")


def reference_cache(recipe: Any, codec: Any, progress: bool) -> Any:
    """The run's own training tokens for the floors: the token cache as training left it when it is complete
    here (its audio need not be), else tokenized as training would."""
    from pianogen import pipeline
    from pianogen.data.tokenize import MANIFEST, TokenCache, cache_dir

    folder = cache_dir(recipe.data, codec, recipe.codec.name)
    if (folder / MANIFEST).is_file():
        return TokenCache(folder)
    return pipeline.build_token_cache(recipe, codec, progress=progress)
