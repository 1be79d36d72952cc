"""Recipe -> the objects a run needs: codec, data source, token cache, token model, losses.

Builders only build: nothing here trains (a missing codec is trained by ``codec_prepare``, which
``pianogen train`` and ``tokenize`` call first)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

import pianogen
from pianogen.errors import PianogenError
from pianogen.paths import expand

if TYPE_CHECKING:
    from pianogen.data.tokenize import TokenCache
    from pianogen.interfaces import Codec, DataSource, Loss, TokenModel
    from pianogen.recipe import Recipe


def build_codec(recipe: "Recipe", device: torch.device | str = "cpu") -> "Codec":
    """The recipe's frozen codec, loaded; a missing one that ``codec.train_recipe`` would make is named."""
    options = dict(recipe.codec.options)
    checkpoint = options.get("checkpoint")
    if checkpoint and recipe.codec.train_recipe and not expand(checkpoint).exists():
        raise PianogenError(f"codec checkpoint {checkpoint} does not exist yet: train it with "
                            f"`pianogen codec train {recipe.codec.train_recipe}` (pianogen train and tokenize "
                            f"train it first)")
    codec = pianogen.get_codec(recipe.codec.name, **options)
    if recipe.codec.levels > codec.n_levels:
        raise PianogenError(f"codec.levels = {recipe.codec.levels}, but codec '{recipe.codec.name}' "
                            f"has {codec.n_levels} levels")
    return codec.to(device).eval().requires_grad_(False)


def build_source(recipe: "Recipe") -> "DataSource":
    from pianogen.data.sources import open_source

    return open_source(recipe.data)


def build_token_cache(recipe: "Recipe", codec: "Codec", progress: bool = True) -> "TokenCache":
    from pianogen.data.tokenize import tokenize

    return tokenize(recipe.data, codec, recipe.codec.name, progress=progress)


def build_token_model(recipe: "Recipe", codec: "Codec") -> "TokenModel":
    if recipe.model is None:
        raise PianogenError(f"{recipe.path.name}: a [model] table is needed to train or generate")
    return pianogen.get_token_model(recipe.model.name, n_levels=recipe.codec.levels,
                                    vocab_size=codec.codebook_size, block_size=recipe.data.window,
                                    **recipe.model.options)


def build_losses(recipe: "Recipe") -> list[tuple[str, float, "Loss"]]:
    if not recipe.loss:
        raise PianogenError(f"{recipe.path.name}: at least one [[loss]] table is needed to train")
    return [(spec.name, spec.weight, pianogen.get_loss(spec.name, **spec.options)) for spec in recipe.loss]


def load_run(run_dir: "str | Path", tag: str = "best", device: torch.device | str = "cpu"
             ) -> "tuple[Recipe, Codec, TokenModel, dict]":
    """A trained run: its frozen recipe (``$RUN`` = ``run_dir``), codec, token model (eval mode, ``tag`` weights)
    and checkpoint meta. A run holding SHA256SUMS (a shipped one) loads only if every file matches it."""
    from pianogen.fetch.run_codec import locate_codec
    from pianogen.recipe import expand_run_folder
    from pianogen.runs import SUMS, verify_sums
    from pianogen.training import checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.toml").is_file():
        raise PianogenError(f"{run_dir} is not a run directory (no recipe.toml); train one with pianogen train")
    found = checkpoint.find(run_dir / "checkpoints", tag)
    if found is None:
        raise PianogenError(f"{run_dir} has no '{tag}' checkpoint under checkpoints/; train (or resume) it first")
    if (run_dir / SUMS).is_file():  # a shipped run: every file is the one recorded, or nothing loads
        verify_sums(run_dir)
    recipe = locate_codec(run_dir, expand_run_folder(pianogen.load_recipe(run_dir / "recipe.toml"), run_dir))
    meta = checkpoint.load_meta(found)
    codec = build_codec(recipe, device)
    if meta["codec_name"] != recipe.codec.name or not codec.recognizes(meta["codec"]):
        raise PianogenError(f"{found} was trained with codec {meta['codec_name']} {meta['codec']}, but the "
                            f"recipe's codec is {recipe.codec.name} {codec.identity()}")
    model = build_token_model(recipe, codec)
    checkpoint.load_weights(found, model, recipe.model.options)
    return recipe, codec, model.to(device).eval(), meta
