"""The generate command's options: unset sampling options come from the run's recipe, post-filter texts parse."""

from __future__ import annotations

import pytest

from pianogen.errors import PianogenError
from pianogen.generation.generate_options import postfilter_specs, with_recipe_defaults
from tests.conftest import tiny_recipe


def test_unset_options_come_from_the_runs_recipe(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tiny_recipe(tmp_path, tmp_path / "codec.safetensors", tmp_path,
                generate={"seconds": 7.5, "temperature": 0.7, "top_k": 11}).rename(run / "recipe.toml")
    merged = with_recipe_defaults(run, {"seconds": None, "prompt_seconds": 2.0, "temperature": None,
                                        "top_k": 0, "top_p": None, "seed": None})
    # given values win, 0 included; None takes the recipe's; keys the recipe does not default stay as given
    assert merged == {"seconds": 7.5, "prompt_seconds": 2.0, "temperature": 0.7, "top_k": 0, "top_p": 0.0,
                      "seed": None}
    with pytest.raises(PianogenError, match="is not a run directory"):
        with_recipe_defaults(tmp_path / "nowhere", {})


def test_postfilter_texts_become_specs():
    assert postfilter_specs(()) is None  # the recipe's post-filters apply
    assert postfilter_specs(["none"]) == []
    assert postfilter_specs(["lowpass:cutoff=0.25,order=4"]) == [{"name": "lowpass", "cutoff": 0.25, "order": 4}]
    with pytest.raises(PianogenError, match="unknown postfilter 'lowpas'"):
        postfilter_specs(["lowpas"])
