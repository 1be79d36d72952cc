"""Loggers: chosen in the recipe, registered through the register_loggers hook (built-ins and a plugin's alike),
fed by both trainers, and right after a resume (what was logged after the checkpoint is forgotten)."""

from __future__ import annotations

import json
import sys

import pytest

import pianogen
from pianogen import registry
from pianogen.errors import PianogenError
from pianogen.training.codec_train import CodecTrainer, metrics_path, train_codec
from pianogen.training.loggers import Logger, LogPlace, TensorBoardLogger
from tests.test_codec_train import recipe_file  # noqa: F401 (the fixture: a tiny codec on piano-like audio)

pytestmark = pytest.mark.usefixtures("one_thread")
SHORT = ["codec_train.steps=4", "codec_train.save_every=2", "codec_train.log_every=1"]


class Killed(BaseException):
    pass


def _train_killed_at_the_second_checkpoint(recipe) -> None:
    """A codec training killed as it saves at step 4: steps 3 and 4 were logged after the checkpoint at 2."""
    real_save, calls = CodecTrainer.save, {"n": 0}

    def save(self, tag="last"):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return real_save(self, tag)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(CodecTrainer, "save", save)
        train_codec(recipe, progress=False)


def test_tensorboard_logs_what_jsonl_logs_and_forgets_the_steps_a_resume_runs_again(recipe_file,  # noqa: F811
                                                                                      isolated_home):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = pianogen.load_recipe(str(recipe_file), [*SHORT, 'codec_train.loggers=["jsonl", "tensorboard"]'])
    _train_killed_at_the_second_checkpoint(recipe)
    out = train_codec(recipe, resume=True, progress=False)
    rows = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    events = EventAccumulator(str(out.with_name("tiny.tensorboard")))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]  # steps 3 and 4 once: the killed run's are purged
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    used = events.Scalars("train/codes_used/3")  # a list (one value per level) as one scalar per index
    assert [e.value for e in used] == [r["codes_used"][3] for r in rows]


class MemoryLogger(Logger):
    """A third party's logger: keeps the records in memory."""

    records: list[dict] = []
    starts: list[int | None] = []

    def __init__(self, place: LogPlace) -> None:
        self.place = place

    def start(self, resumed_at):
        MemoryLogger.starts.append(resumed_at)

    def log(self, record):
        MemoryLogger.records.append(record)


class MemoryPlugin:
    @staticmethod
    @pianogen.hookimpl
    def register_loggers(register):
        register("memory", MemoryLogger)


def test_a_plugins_logger_is_chosen_in_the_recipe_and_gets_every_record(recipe_file,  # noqa: F811
                                                                        isolated_home, fresh_registry):
    registry.register_module(MemoryPlugin, "memory-logger")
    MemoryLogger.records, MemoryLogger.starts = [], []
    recipe = pianogen.load_recipe(str(recipe_file), [*SHORT, 'codec_train.loggers=["memory"]'])
    _train_killed_at_the_second_checkpoint(recipe)
    out = train_codec(recipe, resume=True, progress=False)
    assert MemoryLogger.starts == [None, 2]  # a fresh start, then a resume from the checkpoint at step 2
    assert [r["step"] for r in MemoryLogger.records] == [1, 2, 3, 4, 3, 4]  # 3 and 4 run again after the resume
    assert all(r["split"] == "train" and r["loss"] > 0 for r in MemoryLogger.records)
    assert not metrics_path(out).exists()  # jsonl was not chosen


def test_a_logger_name_is_checked_with_did_you_mean_when_the_recipe_loads(recipe_file):  # noqa: F811
    with pytest.raises(PianogenError, match=r"train.loggers: unknown logger 'tensorbord' \(did you mean "
                                            r"'tensorboard'\?\)"):
        pianogen.load_recipe(str(recipe_file), ['train.loggers=["jsonl", "tensorbord"]'])
    with pytest.raises(PianogenError, match=r"codec_train.loggers: unknown logger 'jsnl'"):
        pianogen.load_recipe(str(recipe_file), ['codec_train.loggers=["jsnl"]'])


def test_tensorboard_without_its_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(PianogenError, match=r"needs the tensorboard package: pip install 'pianogen\[tensorboard\]'"):
        TensorBoardLogger(LogPlace(tmp_path))
