"""What the ``generate`` command line means before anything is generated: the run's recipe fills the
sampling options left unset, and ``--postfilter NAME:KEY=VALUE,...`` texts become post-filter specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError

# the recipe's [generate] keys, which every way in (command line, page, continue_audio) defaults from the run
RECIPE_DEFAULTED = ("seconds", "prompt_seconds", "temperature", "top_k", "top_p", "prompt_prior",
                    "quiet_temperature_scale", "ring_out")

# The limits of one generation, shared by the command line's options, check_request and the web page's server:
MAX_SECONDS = 3600.0  # continuation and prompt; longer than an hour is a typo far more often than a wish
MAX_NUM = 64  # continuations sampled as one batch: memory grows with it, and --num 10**20 must not allocate
MAX_TEMPERATURE = 100.0
MAX_PROMPT_PRIOR = 100.0  # past ~10 the prompt's frequencies alone decide: larger is a typo
MAX_SEED = 2**63 - 1  # torch's generators take 64 bits; run.seed + epoch must not overflow either


def with_recipe_defaults(run_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with each of ``RECIPE_DEFAULTED`` that is None taken from the run's ``[generate]`` table."""
    from pianogen import load_recipe

    if not (Path(run_dir) / "recipe.toml").is_file():
        raise PianogenError(f"{run_dir} is not a run directory (no recipe.toml); train one with pianogen train")
    defaults = load_recipe(Path(run_dir) / "recipe.toml").generate
    return {key: getattr(defaults, key) if value is None and key in RECIPE_DEFAULTED else value
            for key, value in options.items()}


def postfilter_specs(texts: tuple[str, ...] | list[str]) -> list[dict[str, Any]] | None:
    """``--postfilter`` texts -> ``[{"name": ..., **options}]``; None when none was given (the recipe's apply),
    [] for ``none``. Names and keys are checked against the registry."""
    from pianogen.recipe import parse_postfilter_option

    if not texts:
        return None
    return [spec for spec in map(parse_postfilter_option, texts) if spec is not None]
