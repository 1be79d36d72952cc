"""`pianogen eval RUN --corpus DIR`: the tiny trained run of conftest scored on corpora it never heard."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import pianogen
from pianogen.errors import PianogenError
from pianogen.evaluation.evaluate import evaluate

FAST = dict(n_prompts=2, prompt_seconds=0.5, seconds=1.0, codec_seconds=1.0, codec_pieces=1, device="cpu",
            progress=False, transcriber=None)


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def other_corpus(tmp_path_factory):
    """Another composed corpus (other seed) in MAESTRO's layout, as `data render` writes one."""
    from pianogen_data.synth import write_corpus

    return write_corpus(tmp_path_factory.mktemp("other") / "other_piano", minutes=0.4, seed=7, progress=False)


@pytest.fixture(scope="module")
def scored(trained_run, other_corpus, tmp_path_factory):
    """The run scored on the other corpus's test split, with a $PIANOGEN_HOME of its own (nothing cached)."""
    home = tmp_path_factory.mktemp("eval_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("PIANOGEN_HOME", str(home))
    before = files_under(trained_run)
    try:
        report = evaluate(trained_run, "test", corpus=other_corpus, **FAST)
        yield report, home, before
    finally:
        mp.undo()


def corpus_rows(root):
    with open(root / pianogen.MAESTRO_CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_the_other_corpus_is_what_is_scored(scored, other_corpus):
    report, _, _ = scored
    assert report["corpus"] == {"name": "other_piano", "source": "maestro", "root": str(other_corpus.resolve())}
    test_files = {r["audio_filename"] for r in corpus_rows(other_corpus) if r["split"] == "test"}
    prompts = report["continuation"]["prompts"]
    assert prompts and {p["audio_filename"] for p in prompts} <= test_files
    assert all("_s7_" in p["audio_filename"] for p in prompts)  # the other seed's pieces, not the run's (seed 0)
    assert len(report["nll_per_level"]) == 2 and all(math.isfinite(v) for v in report["nll_per_level"])


def test_its_tokens_are_cached_under_the_home_and_the_run_is_untouched(scored, trained_run):
    report, home, before = scored
    assert files_under(trained_run) == before
    manifests = [json.loads(p.read_text()) for p in (home / "tokens").glob("*/manifest.json")]
    roots = sorted(m["data"].get("root", "") for m in manifests)
    # the corpus's cache and the run's own training tokens (tokenized here for the floors), both in the home
    assert len(manifests) == 2 and report["corpus"]["root"] in roots


def test_the_floors_are_fitted_on_the_runs_training_tokens(scored, trained_run):
    """The unigram floor's NLL on the corpus is the one of a unigram fitted on the run's own train split (the
    model's training data), not on the other corpus's train split."""
    from pianogen import pipeline
    from pianogen.evaluation.eval_corpus import corpus_table, with_corpus
    from pianogen.evaluation.evaluate import ReferenceModels

    report, home, _ = scored
    assert report["references_fitted_on"] == "the run's training tokens (maestro)"
    recipe, codec, _, _ = pipeline.load_run(trained_run, "best", torch.device("cpu"))
    mp = pytest.MonkeyPatch()
    mp.setenv("PIANOGEN_HOME", str(home))
    try:
        own = pipeline.build_token_cache(recipe, codec, progress=False)
        other = pipeline.build_token_cache(with_corpus(recipe, corpus_table(report["corpus"]["root"])), codec,
                                           progress=False)
    finally:
        mp.undo()
    K, V = 2, codec.codebook_size

    def unigram_nll(train_cache):
        logp = ReferenceModels.fit((train_cache.codes(p) for p in train_cache.pieces("train")), K, V
                                   ).unigram_logp.double().numpy()
        targets = np.concatenate([np.asarray(other.codes(p)[:K], dtype=np.int64)[:, 1:]
                                  for p in other.pieces("test")], axis=1)
        return [-logp[k, targets[k]].mean() for k in range(K)]

    assert report["unigram_nll_per_level"] == pytest.approx(unigram_nll(own), rel=1e-6)
    assert report["unigram_nll_per_level"] != pytest.approx(unigram_nll(other), rel=1e-6)


def test_a_plain_folder_with_split_all_scores_every_piece(trained_run, other_corpus, tmp_path, monkeypatch):
    """A folder of audio without a CSV is read by the folder source; --split all prompts from every piece."""
    folder = tmp_path / "takes"
    wavs = sorted(other_corpus.rglob("*.wav"))[:3]
    for wav in wavs:
        (folder / wav.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, folder / wav.parent.name / wav.name)
    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))  # the run's training tokens cached
    report = evaluate(trained_run, "all", corpus=folder, **{**FAST, "n_prompts": 3})
    assert report["corpus"]["source"] == "folder" and report["split"] == "all"
    prompts = [p["audio_filename"] for p in report["continuation"]["prompts"]]
    assert sorted(prompts) == sorted(f"{w.parent.name}/{w.name}" for w in wavs)  # each piece's start first


def test_an_empty_split_names_the_splits_the_corpus_has(trained_run, tmp_path, other_corpus):
    from pianogen_data.sources import FolderSource

    folder = tmp_path / "two_takes"
    folder.mkdir()
    source = FolderSource(folder)
    names = [n for n in (f"take{i}.wav" for i in range(50)) if source.split_of(n) == "train"][:2]
    wav = sorted(other_corpus.rglob("*.wav"))[0]
    for name in names:
        shutil.copy(wav, folder / name)
    args = [sys.executable, "-m", "pianogen", "eval", str(trained_run), "--corpus", str(folder), "--device", "cpu"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the corpus two_takes has no 'test' pieces; its splits: train (2 pieces); --split all scores every "
        "piece of a corpus the run never heard"]
    assert not (trained_run / "eval-two_takes").exists()


def test_bad_corpus_and_split_all_without_one_are_one_line(trained_run, tmp_path):
    with pytest.raises(PianogenError, match=r"no such folder, nor a data source \(did you mean 'salamander'\?\)"):
        evaluate(trained_run, "test", corpus="salamandr", **FAST)
    with pytest.raises(PianogenError, match="all is for --corpus"):
        evaluate(trained_run, "all", **FAST)
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(PianogenError, match="is a file"):
        evaluate(trained_run, "test", corpus=tmp_path / "a.wav", **FAST)
