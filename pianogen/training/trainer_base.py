"""The lifecycle every training shares, written once: audiocraft's ``solvers/base.py``, torchtune's recipe class.

``Trainer.run`` is lock → resume-settings check → build → restore (or start fresh) → wrap → fit → save, for the
token model (train.py) and the codec (codec_train.py) alike. A trainer says only what is its own: ``build``
(models, optimizers, data; it registers what a checkpoint must hold with ``register_state``), ``run_epoch`` and
``end_epoch`` (its steps and its validation), and a few facts (where its checkpoints go, what its settings are,
what its meta.json says). Saving, restoring, the checkpoint format, the run lock, the resume-settings check and
the loggers are here.

A checkpoint is one folder swapped in atomically (``checkpoint.save``: ``<tag>.new`` -> ``<tag>``): the weights
(``model.safetensors``), the trainer state (``trainer_state.pt``: the loop's ``TrainState``, every registered
optimizer/scheduler, every random generator, the trainer's extras) and ``meta.json``. A kill at any moment leaves
one complete checkpoint whose parts belong together; what a trainer exports from it (the codec's file) comes after.
"""

from __future__ import annotations

import abc
import os
import random
from pathlib import Path
from typing import Any

from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.progress import StepBar
from pianogen.recipe import Recipe
from pianogen.training import checkpoint
from pianogen.training.loggers import Loggers, LogPlace, build_loggers
from pianogen.training.runlock import run_lock
from pianogen.training.trainloop import TrainState, capture_rng, join_processes, restore_rng


class Trainer(abc.ABC):
    """One training. Subclasses set, in ``__init__`` (nothing heavy: the lock is not held yet):
    ``checkpoint_root`` (its checkpoints' folder), ``lock_dir`` / ``lock_name`` / ``lock_busy`` (its lock file
    and what a second training is told), ``log_place`` and ``logger_names``, ``bar_label``; and in ``build``:
    ``model`` (the weights a checkpoint holds) and ``total_steps``."""

    checkpoint_root: Path
    lock_dir: Path
    lock_name: str = ".lock"
    lock_busy: str | None = None  # None: "<lock_dir> is in use by another training"
    log_place: LogPlace
    logger_names: list[str]
    bar_label: str
    model: Any  # torch.nn.Module
    total_steps: int

    def __init__(self, recipe: Recipe, resume: bool = False, progress: bool = True, force: bool = False) -> None:
        self.recipe, self.resume, self.progress, self.force = recipe, resume, progress, force
        self.state = TrainState()
        self.python_rngs: dict[str, random.Random] = {}  # the trainer's own generators, saved and restored
        self.saved_step: int | None = None  # the step of the last checkpoint written or resumed from
        self._stateful: dict[str, tuple[Any, bool]] = {}

    # ---- the lifecycle -------------------------------------------------------------------------------------
    def run(self) -> Path:
        """The whole training; returns what the trainer made (the run directory, the codec file)."""
        with run_lock(self.lock_dir, enabled=int(os.environ.get("RANK", "0")) == 0, name=self.lock_name,
                      busy=self.lock_busy):
            self.device, self.ddp = join_processes(pick_device(self.recipe.run.device))
            resume_from = self.resume_point()
            # built (not started) now: a logger whose package is missing stops the run before it writes anything
            self.loggers: Loggers = build_loggers(self.logger_names, self.log_place, enabled=self.ddp.main)
            self.build()
            if resume_from is None:
                self.start_fresh()
            else:
                self.restore(resume_from)
                self.saved_step = self.state.step
            self.wrap()
            self.loggers.start(None if resume_from is None else self.state.step)
            self.bar = StepBar(self.bar_label, self.total_steps, self.state.step,
                               enabled=self.progress and self.ddp.main)
            try:
                self.fit()
                if self.saved_step != self.state.step:  # the end is always in a checkpoint (steps = 0 too)
                    self.save("last")
                    self.loggers.checkpoint()
            finally:
                self.loggers.close()
            return self.close()

    def resume_point(self) -> Path | None:
        """The checkpoint to continue from (None: a fresh training), after checking that this is what was asked
        and that resuming keeps the recorded settings; nothing is written before this passes."""
        last = self.find_checkpoint()
        if self.has_output(last) and not self.resume and not self.force:
            raise self.refusal(last)
        if not self.resume:
            return None
        if last is None:
            raise PianogenError(f"nothing to resume: no checkpoint under {self.checkpoint_root}")
        self.check_settings(last)
        return last

    def fit(self) -> None:
        """``run_epoch`` then ``end_epoch`` until ``finished``; the loggers make each end durable."""
        with self.bar:
            while not self.finished():
                self.run_epoch()
                self.end_epoch()
                self.loggers.checkpoint()

    # ---- registered state, saving and restoring ------------------------------------------------------------
    def register_state(self, name: str, obj: Any, required: bool = True) -> None:
        """``obj.state_dict()`` goes into every checkpoint's trainer state under ``name`` and comes back with
        ``load_state_dict`` on resume (``required=False``: a checkpoint without it is restored all the same)."""
        self._stateful[name] = (obj, required)

    def save(self, tag: str = "last") -> None:
        """One checkpoint folder (rank 0 writes it), then what the trainer exports from it."""
        if self.ddp.main:
            trainer_state = {**self.state.to_dict(), **{n: o.state_dict() for n, (o, _) in self._stateful.items()},
                             "rng": capture_rng(self.python_rngs), **self.extra_state()}
            checkpoint.save(self.checkpoint_root, tag, self.model, self.meta(), trainer_state)
            self.export(tag)
        if tag == "last":
            self.saved_step = self.state.step

    def restore(self, path: Path) -> None:
        """Weights, registered state, generators and the loop's counters from the checkpoint folder ``path``."""
        checkpoint.load_weights(path, self.model)
        self.restore_state(checkpoint.load_trainer_state(path), checkpoint.load_meta(path))

    def restore_state(self, saved: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        for name, (obj, required) in self._stateful.items():
            if name in saved:
                obj.load_state_dict(saved[name])
            elif required:
                raise PianogenError(f"the checkpoint's trainer state lacks '{name}': it was not written by this "
                                    f"trainer; train afresh (--force, or a new run.dir)")
        self.state = TrainState.from_dict({**(meta or {}), **saved})  # 0.1 checkpoints kept counters in meta only
        self.restore_rng(saved)
        self.load_extra(saved)

    def restore_rng(self, saved: dict[str, Any]) -> None:
        """Every generator as it was saved, so the resumed run draws what the unbroken one would."""
        restore_rng(saved["rng"], self.python_rngs)

    def log(self, record: dict[str, Any]) -> None:
        self.loggers.log(record)

    # ---- what a trainer may say about itself ---------------------------------------------------------------
    def find_checkpoint(self) -> Path | None:
        return checkpoint.find(self.checkpoint_root, "last")

    def has_output(self, last: Path | None) -> bool:
        """Whether a fresh training would overwrite something (a checkpoint, by default)."""
        return last is not None

    def refusal(self, last: Path | None) -> PianogenError:
        return PianogenError(f"{self.lock_dir} already has checkpoints: pass --resume to continue, or choose "
                             f"another run.dir")

    @abc.abstractmethod
    def check_settings(self, last: Path) -> None:
        """PianogenError when the recipe would change what the checkpoint ``last`` was trained with."""

    @abc.abstractmethod
    def build(self) -> None:
        """Models, optimizers, data; ``register_state`` for everything a checkpoint must hold."""

    def start_fresh(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """What a training not resumed does once built (the codec's codebooks are initialised from audio)."""

    def wrap(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """Ready for the fit: compile, DDP, whatever depends on the restored state."""

    def extra_state(self) -> dict[str, Any]:
        """What else the trainer state holds (plain values and tensors only: it is loaded weights_only)."""
        return {}

    def load_extra(self, saved: dict[str, Any]) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """Put back what ``extra_state`` saved."""

    @abc.abstractmethod
    def meta(self) -> dict[str, Any]:
        """The checkpoint's meta.json (must hold "step")."""

    def export(self, tag: str) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """After each checkpoint: write what the training makes for others (the codec's file)."""

    @abc.abstractmethod
    def finished(self) -> bool:
        """True when the recipe's length is reached."""

    @abc.abstractmethod
    def run_epoch(self) -> None:
        """Train up to the next end: steps, log records, progress."""

    @abc.abstractmethod
    def end_epoch(self) -> None:
        """Validate and checkpoint, as the trainer does at an end."""

    def close(self) -> Path:
        """After the last checkpoint; returns what the training made."""
        return self.checkpoint_root
