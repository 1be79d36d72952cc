"""data.source = "mix": its recipe checks, the mixed corpus's pieces, and codec and token training that
draw each part at its share whatever the part's size."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

import pianogen
from pianogen.data.sources import open_source
from pianogen.errors import PianogenError
from pianogen.recipe import dump_toml
from pianogen.training.codec_segments import SegmentSampler
from pianogen.training.codec_train import _train_groups, train_codec
from pianogen.training.distributed import Distributed
from pianogen.training.train import EpochBatchSampler

from .conftest import tiny_recipe

SR = 8000
pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(path, files: int, sign: float, seconds: float = 1.0):
    """``files`` recordings whose every sample has the sign ``sign``: a segment tells which part it came from."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(files)
    for i in range(files):
        wav = sign * (0.1 + 0.2 * rng.random(int(seconds * SR))).astype(np.float32)
        sf.write(path / f"take{i}.wav", wav, SR)
    return path


def _mix_recipe(tmp_path, small_share: float, **codec_train):
    """One file (positive samples) at ``small_share`` mixed with nine (negative samples)."""
    parts = [{"source": "folder", "root": str(_folder(tmp_path / "mine", 1, +1.0)), "split_ratios": [1.0, 0.0, 0.0],
              "share": small_share},
             {"source": "folder", "root": str(_folder(tmp_path / "corpus", 9, -1.0)),
              "split_ratios": [1.0, 0.0, 0.0], "share": 1.0 - small_share}]
    raw = {"data": {"source": "mix", "mix": parts},
           "codec": {"name": "soundstream", "checkpoint": "$PIANOGEN_HOME/codecs/mixed.safetensors",
                     "sample_rate": SR, "channels": 4, "dim": 16, "strides": [2, 4, 5], "n_levels": 4,
                     "codebook_size": 16, "kmeans_iters": 5},
           "codec_train": {"steps": 20, "batch_size": 4, "segment_seconds": 0.25, "lr": 3e-3, "log_every": 10,
                           "save_every": 10, **codec_train}}
    path = tmp_path / "mixed.toml"
    path.write_text(dump_toml(raw))
    return path


def test_a_mix_names_its_parts_pieces_and_normalises_the_shares(tmp_path):
    recipe = pianogen.load_recipe(str(_mix_recipe(tmp_path, 0.7)), ["data.mix.1.share=0.9"])
    source = open_source(recipe.data)
    pieces = source.pieces()
    assert sorted({p.group for p in pieces}) == ["folder1", "folder2"]
    assert [p.audio_filename for p in pieces if p.group == "folder1"] == ["folder1/take0.wav"]
    assert len([p for p in pieces if p.group == "folder2"]) == 9
    assert source.shares() == pytest.approx({"folder1": 0.7 / 1.6, "folder2": 0.9 / 1.6})


def test_codec_segments_come_from_each_part_at_its_share(tmp_path):
    """One file against nine: drawn by piece the one file would give 10 % of the segments; its share is 70 %."""
    groups, shares = _train_groups(pianogen.load_recipe(str(_mix_recipe(tmp_path, 0.7))))
    sampler = SegmentSampler(groups, shares, SR, SR // 4, random.Random(0))
    segments = sampler.batch(4000)
    assert ((segments > 0).all(-1) | (segments < 0).all(-1)).all()  # every segment lies inside one part
    assert (segments[:, 0, 0] > 0).float().mean().item() == pytest.approx(0.7, abs=0.03)
    one_corpus = {"": groups["folder1"] + groups["folder2"]}
    unshared = SegmentSampler(one_corpus, {}, SR, SR // 4, random.Random(0)).batch(4000)
    assert (unshared[:, 0, 0] > 0).float().mean().item() == pytest.approx(0.1, abs=0.03)


def test_mixed_codec_training_resumes_exactly(tmp_path, isolated_home):
    """The pools of both parts are saved and restored: stopping at step 10 changes nothing."""
    path = _mix_recipe(tmp_path, 0.5)
    straight = train_codec(pianogen.load_recipe(str(path), ["codec_train.out=$PIANOGEN_HOME/a.safetensors"]),
                           progress=False)
    half = ["codec_train.out=$PIANOGEN_HOME/b.safetensors"]
    train_codec(pianogen.load_recipe(str(path), ["codec_train.steps=10", *half]), progress=False)
    resumed = train_codec(pianogen.load_recipe(str(path), half), resume=True, progress=False)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed run differs"


def test_token_training_draws_each_part_at_its_share(tmp_path, tiny_codec_path, tiny_corpus, isolated_home):
    """A tokenized mix of the tiny corpus (its 'train' pieces) and one short take: every window of the take is
    drawn half the time, and a run on the mix trains."""
    take = _folder(tmp_path / "take", 1, +1.0, seconds=1.5)
    parts = [{"source": "maestro", "root": str(tiny_corpus), "share": 0.5},
             {"source": "folder", "root": str(take), "split_ratios": [1.0, 0.0, 0.0], "share": 0.5}]
    path = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, data={"source": "mix", "root": "", "mix": parts},
                       train={"epochs": 1})
    recipe = pianogen.load_recipe(str(path))
    from pianogen import pipeline
    from pianogen.data.windows import WindowDataset

    codec = pipeline.build_codec(recipe, "cpu")
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    manifest = json.loads((cache.dir / "manifest.json").read_text())
    assert {p["group"] for p in manifest["pieces"]} == {"maestro", "folder"}
    dataset = WindowDataset(cache, "train", 2, recipe.data.window, recipe.data.window_overlap)
    weights = dataset.draw_weights(open_source(recipe.data).shares())
    take_windows = {i for i in range(len(dataset)) if dataset.pieces[dataset.index[i, 0]]["group"] == "folder"}
    assert 0 < len(take_windows) < 0.25 * len(dataset)  # drawn by window the take would get under half
    drawn = []
    sampler = EpochBatchSampler(len(dataset), 8, Distributed(), seed=0, shuffle=True, drop_last=True, weights=weights)
    for epoch in range(40):
        sampler.set_epoch(epoch)
        drawn += [i for batch in sampler for i in batch]
    assert np.mean([i in take_windows for i in drawn]) == pytest.approx(0.5, abs=0.03)
    trained = subprocess.run([sys.executable, "-m", "pianogen", "train", str(path)], capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]


@pytest.mark.parametrize(("override", "message"), [
    ("data.source=synthetic", 'data.mix is read by data.source = "mix" only'),
    ("data.mix=[]", 'data.source = "mix" needs data.mix'),
    ("data.mix.0.share=0", "data.mix.0.share must be a number > 0, got 0"),
    ("data.mix.0.minuts=3", "unknown key 'data.mix.0.minuts'"),
    ("data.mix.1.source=salamandr", "data.mix.1.source: "),
    ('data.mix.1.source="mix"', "data.mix.1: a mix cannot hold another mix"),
    ("data.mix.0.split_ratios=high", "data.mix.0.split_ratios must be list"),
    ("data.mix.0.source=5", "data.mix.0.source must be str, got 5"),
    ("data.mix.1.source=synthetic", "unknown key 'data.mix.1.split_ratios' for data source 'synthetic'"),
])
def test_a_bad_mix_is_one_line_naming_the_key(tmp_path, override, message):
    path = _mix_recipe(tmp_path, 0.5)
    done = subprocess.run([sys.executable, "-m", "pianogen", "codec", "train", str(path), override],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_part_obeys_the_data_tables_ranges(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(dump_toml({"data": {"source": "mix", "mix": [{"source": "synthetic", "minutes": -1.0,
                                                                    "share": 1.0}]}}))
    with pytest.raises(PianogenError, match=r"data\.mix\.0\.minutes must be > 0, got -1"):
        pianogen.load_recipe(str(path))
