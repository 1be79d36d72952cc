"""Codec training's segment pools: a corpus bigger than the pool is seen over the run, at a load cost set by
the pieces' length, and a resumed pool rotates as the unbroken one would."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf

import pianogen.training.codec_segments as codec_segments
from pianogen.training.codec_segments import ROTATE_EVERY, SegmentSampler

SR = 1000  # a low rate keeps minutes of audio cheap; the pools count seconds


def pieces(root, count: int, seconds: float) -> list:
    root.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        paths.append(root / f"p{i:03d}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return paths


def seen_over(sampler: SegmentSampler, steps: int) -> set[str]:
    seen = set(sampler.pool_paths[""])
    for step in range(1, steps + 1):
        sampler.rotate(step)
        seen |= set(sampler.pool_paths[""])
    return seen


def test_short_pieces_rotate_every_step_and_the_corpus_is_seen(tmp_path, monkeypatch):
    """100 one-second notes, a pool of 20: one new note a step, so 400 steps see nearly all of them (one note
    every 50 steps, as before, would have seen at most 28)."""
    monkeypatch.setattr(codec_segments, "POOL_SECONDS", 20.0)
    sampler = SegmentSampler({"": pieces(tmp_path / "notes", 100, 1.0)}, {}, SR, SR // 4, random.Random(0))
    assert len(sampler.pool_paths[""]) == 20 and sampler.rotation_periods == {"": 1}
    assert len(seen_over(sampler, 400)) >= 95
    assert len(sampler.pool_paths[""]) == 20  # a swap, not a growth


@pytest.mark.parametrize("seconds, period", [(30.0, 5), (600.0, ROTATE_EVERY)])
def test_long_pieces_rotate_as_often_as_their_length_allows(tmp_path, monkeypatch, seconds, period):
    """About ROTATE_SECONDS of new audio a step: a 30 s piece every 5 steps; a 10-minute piece every
    ROTATE_EVERY steps, no rarer however long the pieces are."""
    monkeypatch.setattr(codec_segments, "POOL_SECONDS", 2 * seconds)
    sampler = SegmentSampler({"": pieces(tmp_path / "long", 4, seconds)}, {}, SR, SR // 4, random.Random(0))
    assert sampler.rotation_periods == {"": period}
    before = list(sampler.pool_paths[""])
    for step in range(1, period):
        sampler.rotate(step)
    assert sampler.pool_paths[""] == before  # nothing loaded between two rotations


def test_a_pool_that_holds_its_corpus_never_loads_again(tmp_path):
    sampler = SegmentSampler({"": pieces(tmp_path / "small", 5, 2.0)}, {}, SR, SR // 4, random.Random(0))
    before = sorted(sampler.pool_paths[""])
    assert len(seen_over(sampler, 200)) == 5 and sorted(sampler.pool_paths[""]) == before
