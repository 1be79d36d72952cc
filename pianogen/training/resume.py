"""What ``train --resume`` and ``codec train --resume`` may change.

A resumed run must follow the trajectory the run recorded, so its settings are compared with the
run's saved recipe.toml before anything is loaded or written; only settings that cannot change the
result (where it runs, how often it logs or saves, how it generates afterwards) may differ. A
finished run is not extended: its learning-rate schedule was laid out for the recorded number of steps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError
from pianogen.recipe import Recipe, load_recipe

RESUMABLE_CHANGES = ("run.dir", "run.device", "data.num_workers", "data.strict", "data.skip_missing",
                     "train.log_every", "train.save_every", "train.compile", "train.loggers", "train.patience",
                     "generate.", "postfilter.")
# a codec's training: these change how often it reports or saves, and where to, not what it trains
RESUMABLE_CODEC_KEYS = ("codec_train.log_every", "codec_train.save_every", "codec_train.loggers", "data.num_workers")
LENGTH_KEYS = ("train.epochs", "train.max_steps")


def follow_moved_run(recipe: Recipe, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """A run's own recipe.toml, read from a run folder that was moved or copied, resumes where it now is.

    The saved run.dir is absolute (so a run can be found from anywhere); read from another place it
    would send the resumed training back to the old folder, or to nothing. An explicit ``run.dir=``
    wins. Says so in one line on stderr when it changes anything."""
    import sys

    here = recipe.path.resolve().parent
    if recipe.path.name != "recipe.toml" or not (here / "checkpoints").is_dir() \
            or any(str(o).startswith("run.dir=") for o in overrides) or recipe.run_dir().resolve() == here:
        return recipe
    print(f"note: {recipe.path} records run.dir {recipe.run.dir}; resuming the run where the file is: {here}",
          file=sys.stderr)
    return dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, dir=str(here)))


def flat_settings(recipe: Recipe) -> dict[str, Any]:
    """Every setting of a recipe as ``table.key`` -> value, defaults included (so an explicit default
    and an omitted key compare equal)."""
    flat: dict[str, Any] = {}
    for table in ("run", "data", "codec", "train", "generate"):
        for key, value in dataclasses.asdict(getattr(recipe, table)).items():
            if key == "options":
                flat.update({f"{table}.{k}": v for k, v in value.items()})
            else:
                flat[f"{table}.{key}"] = value
    if recipe.model is not None:
        flat.update({"model.name": recipe.model.name, **{f"model.{k}": v for k, v in recipe.model.options.items()}})
    for table in ("loss", "postfilter"):
        for i, spec in enumerate(getattr(recipe, table)):
            entry = {k: v for k, v in dataclasses.asdict(spec).items() if k != "options"}
            flat.update({f"{table}.{i}.{k}": v for k, v in {**entry, **spec.options}.items()})
    return flat


def check_resume_settings(recipe: Recipe, run_dir: Path) -> None:
    """PianogenError, before anything is touched, when ``recipe`` would change the recorded run."""
    saved_path = run_dir / "recipe.toml"
    if not saved_path.is_file():  # checked before anything else: without it, what the run was cannot be known
        raise PianogenError(f"{saved_path} is missing: --resume compares the settings with the run's recorded "
                            f"recipe; restore it, or train afresh in a new run.dir")
    try:
        saved = flat_settings(load_recipe(saved_path))
    except PianogenError as err:
        raise PianogenError(f"cannot compare with the run's recorded recipe: {err}") from None
    check_unchanged(saved, flat_settings(recipe), "the recorded run",
                    f"resume with the recorded settings ({saved_path}), or train them in a new run.dir",
                    may_change=RESUMABLE_CHANGES, length_keys=LENGTH_KEYS)


def codec_settings(recipe: Recipe) -> dict[str, Any]:
    """What a codec's training depends on, as ``table.key`` -> value: --resume must not change any of it."""
    flat = {"run.seed": recipe.run.seed, "codec.name": recipe.codec.name}
    flat.update({f"codec.{k}": v for k, v in recipe.codec.options.items()})
    for table in ("data", "codec_train"):
        for key, value in dataclasses.asdict(getattr(recipe, table)).items():
            # a data source's own keys (data.options) count as [data] keys, as the recipe spells them
            entries = value.items() if key == "options" and isinstance(value, dict) else [(key, value)]
            flat.update({f"{table}.{k}": v for k, v in entries if f"{table}.{k}" not in RESUMABLE_CODEC_KEYS})
    if recipe.codec_train.schedule == "constant":  # only a constant lr does not depend on the length: extendable
        flat.pop("codec_train.steps")
    if recipe.codec_train.train == "all":  # as every training recorded before the key existed
        flat.pop("codec_train.train")
    return json.loads(json.dumps(flat, default=str))  # as the checkpoint stores it


def check_unchanged(recorded: dict[str, Any], given: dict[str, Any], what: str, way_out: str,
                    may_change: tuple[str, ...] = (), length_keys: tuple[str, ...] = ()) -> None:
    """The one resume-settings check of both trainers: PianogenError naming (up to three of) the settings that
    differ between the recorded training and ``given``; keys starting with one of ``may_change`` may differ."""
    changed = [k for k in sorted(set(recorded) | set(given))
               if not k.startswith(may_change) and recorded.get(k, "unset") != given.get(k, "unset")]
    if not changed:
        return
    shown = ", ".join(f"{k} {recorded.get(k, 'unset')!r} -> {given.get(k, 'unset')!r}" for k in changed[:3])
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    why = ("a run's learning-rate schedule is laid out for its recorded length, so it cannot be extended; "
           "train longer in a new run.dir" if any(k in length_keys for k in changed) else way_out)
    raise PianogenError(f"--resume would change {what}: {shown}{more}; {why}")
