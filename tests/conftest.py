"""Shared fixtures: an isolated cache root and a fresh plugin registry per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pianogen import registry

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own $PIANOGEN_HOME, so caches never leak between tests or into ~/.cache."""
    home = tmp_path_factory.mktemp("pianogen_home")
    monkeypatch.setenv("PIANOGEN_HOME", str(home))
    return home


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry rebuilt from scratch for this test and again afterwards."""
    registry.reset()
    yield registry
    registry.reset()


@pytest.fixture
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy 2-core box OpenMP spinning costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_CODEC = dict(sample_rate=8000, channels=4, dim=16, strides=[2, 4, 5], n_levels=4, codebook_size=64)


@pytest.fixture(scope="session")
def tiny_codec_path(tmp_path_factory):
    """A tiny SoundStream checkpoint: random weights, codebooks k-means-initialised on noise;
    200 frames/s, 4 levels of 64 codes."""
    from pianogen_soundstream.model import SoundStream, SoundStreamConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("codec") / "tiny.safetensors"
    codec = SoundStream(SoundStreamConfig(**TINY_CODEC))
    codec.init_codebooks(torch.randn(4, 1, 8000))
    codec.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Half a minute of synthetic piano in MAESTRO's layout (read with data.source = "maestro")."""
    from pianogen_data.synth import write_corpus

    return write_corpus(tmp_path_factory.mktemp("corpus") / "maestro", minutes=0.5, seed=0, progress=False)


def tiny_recipe(tmp_path, codec_path, corpus, **sections) -> Path:
    """A tiny CPU recipe file; ``sections`` override tables, e.g. train={"epochs": 1}."""
    from pianogen.recipe import dump_toml

    raw = {
        "run": {"dir": str(tmp_path / "run"), "seed": 0},
        "data": {"source": "maestro", "root": str(corpus), "window": 32, "window_overlap": 0.5,
                 "chunk_seconds": 4.0, "chunk_overlap_seconds": 0.5, "num_workers": 0},
        "codec": {"name": "soundstream", "levels": 2, "checkpoint": str(codec_path)},
        "model": {"name": "multi_output", "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "dropout": 0.0},
        "loss": [{"name": "nll"}],
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "schedule": "cosine", "log_every": 5},
        "generate": {"seconds": 0.5, "prompt_seconds": 0.5, "top_k": 20},
    }
    for name, values in sections.items():
        if isinstance(values, list):
            raw[name] = values
        else:
            raw.setdefault(name, {}).update(values)
    path = tmp_path / "tiny.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(raw))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_codec_path, tiny_corpus):
    """One tiny training run shared by the generation and evaluation tests."""
    import os

    from pianogen import load_recipe
    from pianogen.training.train import train

    root = tmp_path_factory.mktemp("trained")
    old = os.environ.get("PIANOGEN_HOME")
    os.environ["PIANOGEN_HOME"] = str(root / "home")
    try:
        return train(load_recipe(tiny_recipe(root, tiny_codec_path, tiny_corpus)), progress=False)
    finally:
        if old is None:
            os.environ.pop("PIANOGEN_HOME")
        else:
            os.environ["PIANOGEN_HOME"] = old
