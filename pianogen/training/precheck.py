"""Check before running: every problem ``pianogen train`` can see before any work, reported at once.

A training run that stops after an hour of rendering and tokenizing because the window is longer than every
piece, or the batch larger than the windows, has wasted the hour. What can be known cheaply is checked
here: the tables training needs, the batch against the processes, the data and weights this machine lacks,
and, from the pieces the data source can name without work (``DataSource.planned``: a MAESTRO CSV, a composed
corpus's plan) or the token cache when it exists, the splits, the window against the pieces and the batch
against the windows.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from pianogen.errors import PianogenError, first_line

if TYPE_CHECKING:
    from pianogen.recipe import Recipe

NEEDED_SPLITS = ("train", "validation")  # training draws from one and picks the best checkpoint on the other


def _frame_rate(recipe: "Recipe") -> tuple[float | None, object | None]:
    """(frames per second, the loaded codec or None): a codec still to be trained is built fresh (its rate is
    its architecture's); None when it cannot be built at all."""
    import pianogen
    from pianogen import pipeline

    try:
        codec = pipeline.build_codec(recipe)
        return float(codec.frame_rate), codec
    except Exception:  # a codec that cannot load is named by the step that loads it
        pass
    try:
        options = {k: v for k, v in recipe.codec.options.items() if k != "checkpoint"}
        return float(pianogen.get_codec(recipe.codec.name, **options).frame_rate), None
    except Exception:  # its rate is then unknown: the frame checks wait for the tokens
        return None, None


def _frames_by_split(recipe: "Recipe", problems: list[str]) -> tuple[dict[str, list[int]] | None, str]:
    """{split: frames of each piece} from the token cache, else the source's planned pieces; and where they
    came from. None when neither says (a corpus to download or render from MIDI first)."""
    from pianogen.data.sources import open_source
    from pianogen.data.tokenize import MANIFEST, cache_dir

    rate, codec = _frame_rate(recipe)
    if codec is not None:
        manifest = cache_dir(recipe.data, codec, recipe.codec.name) / MANIFEST
        if manifest.is_file():
            import json

            by_split: dict[str, list[int]] = {}
            for piece in json.loads(manifest.read_text())["pieces"]:
                by_split.setdefault(piece["split"], []).append(int(piece["frames"]))
            return by_split, "the token cache"
    try:
        planned = open_source(recipe.data).planned()
    except PianogenError as err:
        problems.append(f"data: {first_line(err)}")
        return None, ""
    if planned is None or rate is None:
        return None, ""
    by_split = {}
    for piece in planned:
        frames = round(piece.duration * rate) if piece.duration else 0
        by_split.setdefault(piece.split, []).append(frames)
    return by_split, f"data source '{recipe.data.source}'"


def _corpus_problems(recipe: "Recipe", by_split: dict[str, list[int]], where: str) -> list[str]:
    from pianogen.data.windows import window_starts

    problems, data, cfg = [], recipe.data, recipe.train
    held = ", ".join(f"{split} {len(frames)}" for split, frames in sorted(by_split.items())) or "none"
    for split in NEEDED_SPLITS:
        if not by_split.get(split):
            problems.append(f"{where} has no '{split}' pieces (pieces by split: {held}); training needs "
                            f"{' and '.join(NEEDED_SPLITS)}")
    train = by_split.get("train", [])
    if not train or not all(train):  # durations unknown: the window and batch are checked once tokenized
        return problems
    if data.window > max(train):
        problems.append(f"data.window = {data.window} frames is longer than the longest train piece of {where} "
                        f"(about {max(train)} frames): use data.window <= {max(train)}")
        return problems
    windows = sum(len(window_starts(frames, data.window, data.window_overlap)) for frames in train)
    if windows < cfg.batch_size:
        problems.append(f"train.batch_size = {cfg.batch_size} is more than the about {windows} training windows "
                        f"of {where}: use more data, or a smaller batch or window")
    elif windows // cfg.batch_size < cfg.grad_accum:
        problems.append(f"train.grad_accum = {cfg.grad_accum} exceeds the about {windows // cfg.batch_size} "
                        f"micro-batches of an epoch")
    return problems


def train_problems(recipe: "Recipe", fetch: bool = False) -> list[str]:
    """Every problem found before training starts, each one line naming its key; [] when none is seen."""
    from pianogen.fetch.needs import missing

    problems = []
    if recipe.model is None:
        problems.append("a [model] table is needed to train")
    if not recipe.loss:
        problems.append("at least one [[loss]] table is needed to train")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if recipe.train.batch_size % world:
        problems.append(f"train.batch_size = {recipe.train.batch_size} does not split over {world} processes")
    needs = [] if fetch else missing(recipe, progress=False)
    if needs:
        problems.append(f"missing data/weights ({'; '.join(n.what for n in needs)}): run "
                        f"`{' && '.join(n.command for n in needs)}` (or add --fetch)")
    else:
        by_split, where = _frames_by_split(recipe, problems)
        if by_split is not None:
            problems += _corpus_problems(recipe, by_split, where)
    return problems


def check_train(recipe: "Recipe", fetch: bool = False) -> None:
    """Raise one PianogenError listing every problem (numbered, one a line) before any work is done."""
    problems = train_problems(recipe, fetch)
    if len(problems) == 1:
        raise PianogenError(problems[0])
    if problems:
        raise PianogenError(f"{len(problems)} problems, nothing done:\n" +
                            "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1)))


def next_command(run_dir: object) -> str:
    """What to run after training: listen to the model continue a test piece."""
    return f"pianogen generate {shlex.quote(str(run_dir))} --prompt test:0"
