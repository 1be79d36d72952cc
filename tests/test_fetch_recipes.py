"""From nothing to a trained run: the recipes' defaults, the one-line 'run <command>' check, ``train --fetch``
against a local server, and a run directory that finds its codec again by content hash."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch

from pianogen import load_recipe
from pianogen.commands.cli import main
from pianogen.errors import PianogenError
from pianogen.fetch.http import sha256_of
from pianogen.fetch.needs import missing
from pianogen.fetch.weights import default_path, weights_spec
from pianogen.pipeline import load_run
from tests.conftest import tiny_recipe
from tests.local_server import LocalServer
from tests.maestro_zip import build_zip
from tests.test_codec_import import reference_state
from tests.test_fetch_maestro import ZIP, cli, one_line_error
from tests.test_fetch_weights import HUB_PATH

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_report_recipe_on_a_fresh_machine_names_the_exact_commands(isolated_home):
    line = one_line_error(cli("train", "novel"))
    assert line.startswith("error: missing data/weights")
    assert "run `pianogen data get maestro --years 2018 && pianogen codec get soundstream` (or add --fetch)" in line
    for name in ("baseline", "novel", "full16"):
        recipe = load_recipe(name)
        assert [n.command for n in missing(recipe)] == ["pianogen data get maestro --years 2018",
                                                        "pianogen codec get soundstream"]


def test_a_recipe_elsewhere_gets_root_and_out_in_its_commands(tmp_path):
    recipe = load_recipe("novel", [f"data.root={tmp_path}/my maestro", f"codec.checkpoint={tmp_path}/ss.safetensors",
                                   "data.years=[2017,2018]"])
    assert [n.command for n in missing(recipe)] == [
        f"pianogen data get maestro --years 2017,2018 --root '{tmp_path}/my maestro'",
        f"pianogen codec get soundstream --out {tmp_path}/ss.safetensors"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from pianogen_data.synth import write_corpus

    corpus = write_corpus(tmp_path_factory.mktemp("synth") / "m", minutes=0.3, seed=0, progress=False)
    buf = io.BytesIO()
    torch.save(reference_state(), buf)
    with LocalServer({ZIP: build_zip(corpus)[0], HUB_PATH: buf.getvalue()}) as server:
        yield server


def test_train_fetch_from_nothing_then_the_run_travels(served, tmp_path, monkeypatch, isolated_home):
    monkeypatch.setenv("PIANOGEN_MAESTRO_URL", served.url + ZIP)
    monkeypatch.setenv("HF_ENDPOINT", served.url)
    path = tiny_recipe(tmp_path, "$PIANOGEN_HOME/codecs/" + weights_spec("soundstream").file,
                       "$PIANOGEN_HOME/data/maestro-v3.0.0", data={"years": [2018]}, train={"epochs": 1})
    with pytest.raises(SystemExit) as stopped:
        main(["train", str(path)])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()

    main(["train", str(path), "--fetch"])
    assert missing(load_recipe(path)) == []
    codec_path = default_path("soundstream")
    record = json.loads((tmp_path / "run" / "codec.json").read_text())
    assert record["sha256"] == sha256_of(codec_path) and record["path"] == str(codec_path.resolve())
    assert load_run(tmp_path / "run")[1].n_levels == 3

    # $PIANOGEN_HOME moved: the recipe's path is empty, the recorded absolute path still holds the file
    moved = tmp_path / "new_home"
    monkeypatch.setenv("PIANOGEN_HOME", str(moved))
    recipe, codec, _, _ = load_run(tmp_path / "run")
    assert recipe.codec.options["checkpoint"] == str(codec_path.resolve())

    # another machine: no file with that content anywhere -> one line naming it and how to get it
    hidden = tmp_path / "elsewhere.safetensors"
    shutil.move(codec_path, hidden)
    with pytest.raises(PianogenError, match=rf"trained with codec soundstream from {codec_path.name} \(sha256 "
                                            rf"{record['sha256'][:16]}\.\.\..*or run `pianogen codec get soundstream`"):
        load_run(tmp_path / "run")

    # the file copied into the run directory is found by its content
    shutil.copyfile(hidden, tmp_path / "run" / codec_path.name)
    recipe, *_ = load_run(tmp_path / "run")
    assert recipe.codec.options["checkpoint"] == str(tmp_path / "run" / codec_path.name)

    # other weights under the recipe's own path are refused, not swapped for the found copy
    (moved / "codecs").mkdir(parents=True)
    shutil.copyfile(tmp_path / "tiny.toml", moved / "codecs" / codec_path.name)
    with pytest.raises(PianogenError, match=rf"{moved / 'codecs' / codec_path.name} holds other weights"):
        load_run(tmp_path / "run")
