"""Recipe loading: validation that names the key, overrides, the built-in recipes."""

from __future__ import annotations

import tomllib

import pytest

import pianogen
from pianogen.errors import PianogenError
from pianogen.recipe import builtin_recipes, dump_toml, load_recipe

MINIMAL = """
[data]
window = 64
[codec]
name = "soundstream"
levels = 2
[model]
name = "multi_output"
[[loss]]
name = "nll"
[[loss]]
name = "mel"
weight = 0.1
[train]
epochs = 3
"""


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    return path


def test_loads_into_dataclasses(recipe_file):
    recipe = load_recipe(recipe_file)
    assert recipe.train.epochs == 3 and recipe.data.window == 64 and recipe.codec.levels == 2
    assert [(spec.name, spec.weight) for spec in recipe.loss] == [("nll", 1.0), ("mel", 0.1)]
    assert recipe.run_dir().as_posix() == "runs/mine"
    assert isinstance(recipe.train.lr, float)


def test_overrides_are_toml_with_bare_strings(recipe_file):
    recipe = load_recipe(recipe_file, ["train.epochs=2", "data.years=[2018]", "data.root=/data/maestro",
                                       "loss.1.weight=0.5", "train.lr=1e-3", "data.source=maestro"])
    assert recipe.train.epochs == 2 and recipe.data.years == [2018] and recipe.data.root == "/data/maestro"
    assert recipe.loss[1].weight == 0.5 and recipe.train.lr == 1e-3 and recipe.data.source == "maestro"
    assert tomllib.loads(dump_toml(recipe.raw))["train"]["epochs"] == 2  # frozen copy keeps the override


@pytest.mark.parametrize("override, message", [
    ("train.epocs=3", r"unknown key 'train\.epocs' \(did you mean 'train\.epochs'\?\)"),
    ("trian.epochs=3", r"unknown table '\[trian\]' \(did you mean 'train'\?\)"),
    ("train.epochs=three", r"train\.epochs must be int, got 'three'"),
    ("train.epochs=0", r"train\.epochs must be >= 1, got 0"),
    ("data.window_overlap=1.5", r"data\.window_overlap must be <= 1"),
    ("train.schedule=cosin", r"train\.schedule must be one of .* \(did you mean 'cosine'\?\)"),
    ("model.name=multi_outptu", r"model\.name: unknown token model 'multi_outptu' \(did you mean 'multi_output'\?\)"),
    ("codec.name=soundstrem", r"codec\.name: unknown codec 'soundstrem' \(did you mean 'soundstream'\?\)"),
    ("model.n_layres=2", r"unknown key 'model\.n_layres' .*did you mean 'model\.n_layers'"),
    ("model.vocab_size=7", r"model\.vocab_size is set from the codec and data"),
    ("loss.3.weight=1", r"loss has 2 entries"),
    ("data.years=2018", r"data\.years must be list\[int\]"),
    ("train", r"not key=value"),
])
def test_bad_values_name_the_key(recipe_file, override, message):
    with pytest.raises(PianogenError, match=message):
        load_recipe(recipe_file, [override])


def test_missing_recipe_suggests_builtin():
    with pytest.raises(PianogenError, match=r"recipe not found: dmeo \(did you mean 'demo'\?\)"):
        load_recipe("dmeo")


def test_invalid_toml_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 1")
    with pytest.raises(PianogenError, match="invalid TOML"):
        load_recipe(bad)


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_builtin_recipes_load_and_open_with_their_command(name):
    path = builtin_recipes()[name]
    first = path.read_text().splitlines()[0]
    assert first.startswith("# pianogen "), first
    recipe = pianogen.load_recipe(name)
    assert recipe.path == path
