"""What ``train --resume`` may change.

A resumed run must follow the trajectory the run recorded, so its settings are compared with the
run's saved recipe.toml before anything is loaded or written; only settings that cannot change the
result (where it runs, how often it logs or saves, how it generates afterwards) may differ. A
finished run is not extended: its learning-rate schedule was laid out for the recorded number of steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError
from pianogen.recipe import Recipe, load_recipe

RESUMABLE_CHANGES = ("run.dir", "run.device", "data.num_workers", "data.strict", "data.skip_missing",
                     "train.log_every", "train.save_every", "train.compile", "generate.", "postfilter.")
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
    given = flat_settings(recipe)
    changed = [k for k in sorted(set(saved) | set(given))
               if not k.startswith(RESUMABLE_CHANGES) and saved.get(k, "unset") != given.get(k, "unset")]
    if not changed:
        return
    shown = ", ".join(f"{k} {saved.get(k, 'unset')!r} -> {given.get(k, 'unset')!r}" for k in changed[:3])
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    why = ("a run's learning-rate schedule is laid out for its recorded length, so it cannot be extended; "
           "train longer in a new run.dir" if any(k in LENGTH_KEYS for k in changed)
           else f"resume with the recorded settings ({saved_path}), or train them in a new run.dir")
    raise PianogenError(f"--resume would change the recorded run: {shown}{more}; {why}")
