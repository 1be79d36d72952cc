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


def train_missing_codec(recipe: "Recipe", progress: bool = True, _seen: tuple[str, ...] = ()) -> None:
    """Train ``codec.checkpoint`` with ``codec.train_recipe`` when it is missing, or finish a training killed
    half-way; nothing when the recipe names no train recipe or the codec is complete. A codec recipe that
    trains the decoder of another codec (``codec_train.train = "decoder"``) names that one's train recipe in
    its own [codec]: it is trained first, the same way."""
    checkpoint = recipe.codec.options.get("checkpoint")
    if not checkpoint or not recipe.codec.train_recipe:
        return
    if recipe.codec.train_recipe in _seen:
        raise PianogenError(f"codec.train_recipe '{recipe.codec.train_recipe}' needs itself to be trained first")
    codec_recipe = pianogen.load_recipe(recipe.codec.train_recipe)
    if codec_recipe.codec_train.train == "decoder":
        train_missing_codec(codec_recipe, progress, (*_seen, recipe.codec.train_recipe))
    if output_path(codec_recipe).resolve() != expand(checkpoint).resolve():
        raise PianogenError(f"codec.train_recipe '{recipe.codec.train_recipe}' writes {output_path(codec_recipe)}, "
                            f"but codec.checkpoint is {checkpoint}")
    done = steps_done(codec_recipe)
    if not expand(checkpoint).exists() or (done is not None and done < codec_recipe.codec_train.steps):
        train_codec(codec_recipe, resume=done is not None, progress=progress)
