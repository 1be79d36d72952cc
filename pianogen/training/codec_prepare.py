"""The explicit step that trains a recipe's missing codec: ``pianogen train`` and ``tokenize`` run it
before building anything; ``eval`` and ``generate`` never do (``pipeline.build_codec`` only loads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pianogen
from pianogen.errors import PianogenError
from pianogen.paths import expand
from pianogen.training.codec_train import output_path, steps_done, train_codec

if TYPE_CHECKING:
    from pianogen.recipe import Recipe


def train_missing_codec(recipe: "Recipe", progress: bool = True) -> None:
    """Train ``codec.checkpoint`` with ``codec.train_recipe`` when it is missing, or finish a training killed
    half-way; nothing when the recipe names no train recipe or the codec is complete."""
    checkpoint = recipe.codec.options.get("checkpoint")
    if not checkpoint or not recipe.codec.train_recipe:
        return
    codec_recipe = pianogen.load_recipe(recipe.codec.train_recipe)
    if output_path(codec_recipe).resolve() != expand(checkpoint).resolve():
        raise PianogenError(f"codec.train_recipe '{recipe.codec.train_recipe}' writes {output_path(codec_recipe)}, "
                            f"but codec.checkpoint is {checkpoint}")
    done = steps_done(codec_recipe)
    if not expand(checkpoint).exists() or (done is not None and done < codec_recipe.codec_train.steps):
        train_codec(codec_recipe, resume=done is not None, progress=progress)
