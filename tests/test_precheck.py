"""`pianogen train` checks before running: every problem it can see, at once, before any work."""

from __future__ import annotations

import csv
import shutil

import pytest

from pianogen.commands.cli import main
from pianogen.errors import PianogenError
from pianogen.recipe import load_recipe
from pianogen.training.precheck import check_train, next_command, train_problems
from tests.conftest import tiny_recipe


@pytest.fixture
def no_validation(tmp_path, tiny_corpus):
    """The tiny corpus with its CSV's validation rows moved to test: the split column names no validation."""
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    csv_path = next(corpus.glob("*.csv"))
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    assert any(r["split"] == "validation" for r in rows)
    for row in rows:
        row["split"] = "test" if row["split"] == "validation" else row["split"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return corpus


def test_every_problem_at_once_before_any_work(tmp_path, monkeypatch, capsys, tiny_codec_path, no_validation):
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path / "home"))
    recipe = tiny_recipe(tmp_path, tiny_codec_path, no_validation, data={"window": 10**6}, loss=[])
    with pytest.raises(SystemExit) as done:
        main(["train", str(recipe)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: 3 problems, nothing done:")
    assert "at least one [[loss]] table" in err
    assert "no 'validation' pieces (pieces by split: test 2, train 1)" in err  # the CSV's splits, not a cache path
    assert "data.window = 1000000 frames is longer than the longest train piece" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "home" / "tokens").exists()  # nothing was done


def test_batch_against_windows_and_accumulation(tmp_path, monkeypatch, tiny_codec_path, tiny_corpus):
    """Counted from the CSV's durations before any work, and exactly from the token cache once it exists."""
    from pianogen.data.windows import WindowDataset
    from pianogen.pipeline import build_codec, build_token_cache

    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path / "home"))

    def problems(**train):
        return train_problems(load_recipe(tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, train=train)))

    def windows_seen() -> int:
        too_big = problems(batch_size=100000)
        assert len(too_big) == 1 and too_big[0].startswith("train.batch_size = 100000 is more than the about ")
        return int(too_big[0].split("about ")[1].split()[0])

    assert problems() == []
    planned = windows_seen()
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus))
    cache = build_token_cache(recipe, build_codec(recipe), progress=False)
    exact = len(WindowDataset(cache, "train", 2, recipe.data.window, recipe.data.window_overlap))
    assert abs(planned - exact) <= 0.05 * exact and windows_seen() == exact  # the cache, once there, is exact
    assert problems(batch_size=exact) == []
    assert problems(batch_size=8, grad_accum=exact) == [
        f"train.grad_accum = {exact} exceeds the about {exact // 8} micro-batches of an epoch"]


def test_a_composed_corpus_is_checked_from_its_plan_before_it_is_rendered(tmp_path, monkeypatch, tiny_codec_path,
                                                                          tiny_corpus):
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path / "home"))
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus,
                                     data={"source": "synthetic", "root": "", "minutes": 0.5, "window": 20000}),
                         ["data.source=synthetic"])
    with pytest.raises(PianogenError, match=r"data\.window = 20000 frames is longer than the longest train piece "
                                            r"of data source 'synthetic'"):
        check_train(recipe)
    assert not (tmp_path / "home" / "synthetic").exists()  # planned, not composed


def test_next_command_names_the_run():
    assert next_command("runs/my run") == "pianogen generate 'runs/my run' --prompt test:0"
