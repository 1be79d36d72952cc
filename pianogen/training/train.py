"""The token-model trainer: ``pianogen train RECIPE`` (and under torchrun, DDP).

Exact resume: the epoch's window order is a pure function of (seed, epoch), checkpoints
record how many micro-batches of the epoch are done, and RNG states are restored, so a
resumed run follows the trajectory of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from pianogen import pipeline
from pianogen.data.tokenize import TokenCache
from pianogen.data.windows import WindowDataset, check_window, iter_windows
from pianogen.errors import PianogenError
from pianogen.fetch.run_codec import record_codec
from pianogen.interfaces import Codec, LossContext
from pianogen.paths import atomic_write_bytes
from pianogen.recipe import Recipe, dump_toml, recorded_raw
from pianogen.training import resume as resuming
from pianogen.training.codec_prepare import train_missing_codec
from pianogen.training.distributed import Distributed, autocast, init_distributed  # noqa: F401 (init_distributed: its old home)
from pianogen.training.loggers import LogPlace
from pianogen.training.scheduled_sampling import with_own_codes
from pianogen.training.trainer_base import Trainer
from pianogen.training.trainloop import lr_factor


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's share of each global batch, in an order fixed by (seed, epoch); can skip done batches.

    With ``weights`` (a mixed corpus, ``WindowDataset.draw_weights``) an epoch is n_items draws with
    replacement, each item drawn by its weight, instead of a permutation."""

    def __init__(self, n_items: int, global_batch: int, ddp: Distributed, seed: int, shuffle: bool,
                 drop_last: bool, weights: torch.Tensor | None = None) -> None:
        self.n_items, self.global_batch, self.ddp = n_items, global_batch, ddp
        self.seed, self.shuffle, self.drop_last, self.weights = seed, shuffle, drop_last, weights
        self.epoch, self.skip = 0, 0
        self.used = len(self)  # batches of an epoch actually yielded (trainer: whole optimizer steps only)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        full, rest = divmod(self.n_items, self.global_batch)
        return full + (0 if self.drop_last or rest < self.ddp.world else 1)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.shuffle and self.weights is not None:
            order = torch.multinomial(self.weights, self.n_items, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(self.n_items, generator=generator)
        else:
            order = torch.arange(self.n_items)
        for b in range(self.skip, self.used):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            per_rank = len(batch) // self.ddp.world
            yield batch[self.ddp.rank * per_rank:(self.ddp.rank + 1) * per_rank].tolist()


def make_optimizer(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": recipe.train.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.train.lr, betas=tuple(recipe.train.betas),
                             fused=device.type == "cuda")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    cfg = recipe.train
    if cfg.schedule == "onecycle":
        # The learning rate only: cycle_momentum would overwrite AdamW's beta1 (0.95 -> 0.85 -> 0.95)
        # and silently ignore the recipe's train.betas.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 2),
                                                   pct_start=max(cfg.warmup, 1e-3), cycle_momentum=False)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg.schedule, cfg.warmup, total_steps))


class Objective:
    """Σ weight · loss over the recipe's [[loss]] list, on next-frame targets."""

    def __init__(self, losses: list[tuple[str, float, torch.nn.Module]]) -> None:
        self.losses = losses

    def __call__(self, logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        # logits[:, :, t] predict codes[:, :, t + 1]; the last position has no target.
        logits, targets, mask = logits[:, :, :-1], codes[:, :, 1:], mask[:, 1:]
        total = logits.new_zeros((), dtype=torch.float32)
        metrics: dict[str, float] = {}
        for name, weight, loss in self.losses:
            value, parts = loss(logits.float(), targets, mask)
            total = total + weight * value
            metrics.update(parts)
            metrics.setdefault(name, float(value.detach()))
        metrics["loss"] = float(total.detach())
        return total, metrics


def train(recipe: Recipe, resume: bool = False, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> Path:
    """Train the recipe's token model; returns the run directory. ``on_step(step)`` runs after each step.

    The run directory is locked for the whole training: a second training of it stops with one line."""
    return TokenTrainer(recipe, resume, progress, on_step).run()


class TokenTrainer(Trainer):
    """A token model's training on the shared lifecycle (trainer_base.Trainer): ``build`` (tokens, model, data,
    losses, optimizer), ``run_epoch`` (one pass over the training windows), ``end_epoch`` (validation and the
    'best' and 'last' checkpoints under ``<run>/checkpoints``)."""

    def __init__(self, recipe: Recipe, resume: bool, progress: bool, on_step: Callable[[int], None] | None) -> None:
        super().__init__(recipe, resume, progress)
        self.cfg, self.on_step = recipe.train, on_step
        self.run_dir = self.lock_dir = recipe.run_dir()
        self.checkpoint_root = self.ckpt_root = self.run_dir / "checkpoints"
        self.log_place, self.logger_names, self.bar_label = LogPlace(self.run_dir), self.cfg.loggers, "train"

    def check_settings(self, last: Path) -> None:
        resuming.check_resume_settings(self.recipe, self.run_dir)

    def build(self) -> None:
        recipe = self.recipe
        self.codec, cache = self._prepare_tokens(self.progress)
        torch.manual_seed(recipe.run.seed)
        check_window(cache, recipe.data.window)  # before the model allocates anything of window size
        self.model = pipeline.build_token_model(recipe, self.codec).to(self.device)
        self.loaders, self.samplers = self._loaders(cache)
        self.objective = self._objective(cache)
        self.total_steps = self._total_steps()
        self.optimizer = make_optimizer(self.model, recipe, self.device)
        self.scheduler = make_scheduler(self.optimizer, recipe, self.total_steps)
        self.register_state("optimizer", self.optimizer)
        self.register_state("scheduler", self.scheduler)
        if self.ddp.main:
            atomic_write_bytes(self.run_dir / "recipe.toml", dump_toml(recorded_raw(recipe)).encode())
            record_codec(self.run_dir, recipe)  # by content hash, so eval/generate elsewhere find the same codec

    def wrap(self) -> None:
        self.wrapped = torch.compile(self.model) if self.cfg.compile else self.model
        if self.ddp.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.wrapped, device_ids=ids)

    def _prepare_tokens(self, progress: bool) -> tuple[Codec, TokenCache]:
        """Rank 0 prepares the codec, corpus and token cache; the others then find them ready."""
        recipe, ddp = self.recipe, self.ddp
        torch.manual_seed(recipe.run.seed)
        if ddp.main:
            train_missing_codec(recipe, progress=progress)
            codec = pipeline.build_codec(recipe, self.device)
            cache = pipeline.build_token_cache(recipe, codec, progress=progress)
        ddp.barrier()
        if not ddp.main:
            codec = pipeline.build_codec(recipe, self.device)
            cache = pipeline.build_token_cache(recipe, codec, progress=False)
        return codec, cache

    def _loaders(self, cache: TokenCache) -> tuple[dict[str, DataLoader], dict[str, EpochBatchSampler]]:
        recipe, cfg, ddp = self.recipe, self.cfg, self.ddp
        datasets = {split: WindowDataset(cache, split, recipe.codec.levels, recipe.data.window,
                                         recipe.data.window_overlap) for split in ("train", "validation")}
        if len(datasets["train"]) < cfg.batch_size:
            raise PianogenError(f"only {len(datasets['train'])} training windows for train.batch_size = "
                                f"{cfg.batch_size}: use more data or a smaller batch or window")
        if cfg.batch_size % ddp.world:
            raise PianogenError(f"train.batch_size = {cfg.batch_size} does not split over {ddp.world} processes")
        shares = pipeline.build_source(recipe).shares()  # a mixed corpus: each group drawn at its share
        samplers = {split: EpochBatchSampler(len(ds), cfg.batch_size, ddp, recipe.run.seed,
                                             shuffle=split == "train", drop_last=split == "train",
                                             weights=ds.draw_weights(shares) if split == "train" else None)
                    for split, ds in datasets.items()}
        workers = recipe.data.num_workers
        # Own generators: creating an epoch's iterator must not draw from the global RNG (exact resume).
        loaders = {split: DataLoader(ds, batch_sampler=samplers[split], num_workers=workers,
                                     persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
                                     generator=torch.Generator().manual_seed(recipe.run.seed))
                   for split, ds in datasets.items()}
        return loaders, samplers

    def _objective(self, cache: TokenCache) -> Objective:
        """The recipe's losses, prepared on the training windows; those that fit something (the mel loss's
        linear stand-in) measure it on the validation windows."""
        recipe, levels = self.recipe, self.codec.n_levels

        def windows(split: str) -> Callable[[], Iterator[torch.Tensor]]:
            return lambda: (b["codes"] for b in iter_windows(cache, split, levels, recipe.data.window,
                                                              self.cfg.batch_size))

        validation = windows("validation") if len(self.loaders["validation"].dataset) else None
        if validation is None:
            print("the validation split has no windows: losses that fit something hold out training windows "
                  "instead", file=sys.stderr)
        losses = pipeline.build_losses(recipe)
        for _, _, loss in losses:
            loss.to(self.device).prepare(LossContext(self.codec, recipe.codec.levels, cache.dir, windows("train"),
                                                     self.device, validation_codes=validation))
        return Objective(losses)

    def _total_steps(self) -> int:
        cfg = self.cfg
        micro_per_epoch = len(self.samplers["train"])
        steps_per_epoch = micro_per_epoch // cfg.grad_accum
        if steps_per_epoch == 0:
            raise PianogenError(f"train.grad_accum = {cfg.grad_accum} exceeds the {micro_per_epoch} micro-batches "
                                f"of an epoch")
        # An epoch's leftover micro-batches (fewer than grad_accum) are not drawn at all: their gradients
        # would never reach an optimizer step and would leak into the next epoch's first one.
        self.samplers["train"].used = steps_per_epoch * cfg.grad_accum
        total = cfg.epochs * steps_per_epoch
        return min(total, cfg.max_steps) if cfg.max_steps else total

    def meta(self) -> dict[str, Any]:
        recipe, codec, loop = self.recipe, self.codec, self.state.to_dict()
        return {**{k: loop[k] for k in ("step", "epoch", "micro_done", "best_val")},
                "codec_name": recipe.codec.name, "codec": codec.identity(), "levels": recipe.codec.levels,
                "model": recipe.model.name, "model_config": recipe.model.options,
                "vocab_size": codec.codebook_size, "block_size": recipe.data.window}

    def finished(self) -> bool:
        state, cfg = self.state, self.cfg
        # early stopping: `patience` epochs in a row without a better validation loss end the run (the
        # `best` checkpoint is the one to use); the schedule keeps its planned length, so a run with
        # patience follows the same trajectory as one without, only shorter
        stalled = cfg.patience and state.epoch - state.best_epoch >= cfg.patience
        return state.step >= self.total_steps or state.epoch >= cfg.epochs or bool(stalled)

    def run_epoch(self) -> None:
        state, cfg = self.state, self.cfg
        self.samplers["train"].set_epoch(state.epoch, skip=state.micro_done)
        self.wrapped.train()
        # tokens/s is timed from here (validation and resumes restart the clock); the window's sums span epochs
        clock, tokens = time.perf_counter(), 0
        for batch in self.loaders["train"]:
            state.accumulate(self._micro_step(batch), cfg.grad_accum)
            state.micro_done += 1
            tokens += cfg.batch_size * self.recipe.codec.levels * self.recipe.data.window
            if state.micro_done % cfg.grad_accum:
                continue
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            state.step += 1
            state.window_steps += 1
            if state.step % cfg.log_every == 0 or state.step == self.total_steps:
                record = {"epoch": state.epoch, "step": state.step, "split": "train", **state.close_window(),
                          "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": tokens / (time.perf_counter() - clock)}
                self.log(record)
                self.bar.update(state.step, f"loss {record['loss']:.3f}  lr {record['lr']:.2e}  "
                                            f"{record['tokens_per_s']:,.0f} tok/s")
                clock, tokens = time.perf_counter(), 0
            else:
                self.bar.update(state.step)
            if cfg.save_every and state.step % cfg.save_every == 0:
                self.save("last")
            if self.on_step is not None:
                self.on_step(state.step)
            if state.step >= self.total_steps:
                break

    def _micro_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Forward and backward of one micro-batch; DDP syncs gradients only on a step's last one."""
        codes = batch["codes"].to(self.device, non_blocking=True)
        mask = batch["mask"].to(self.device, non_blocking=True)
        sync = (self.state.micro_done + 1) % self.cfg.grad_accum == 0
        with (contextlib.nullcontext() if sync or self.ddp.world == 1 else self.wrapped.no_sync()):
            with autocast(self.device, self.cfg.precision):
                # the inputs may hold some of the model's own samples; the targets are always the data
                logits = self.wrapped(with_own_codes(self.wrapped, codes, self.cfg.scheduled_sampling))
            loss, parts = self.objective(logits, codes, mask)
            if not math.isfinite(parts["loss"]):
                raise PianogenError(f"loss became {parts['loss']} at step {self.state.step} (epoch "
                                    f"{self.state.epoch}); the last good checkpoint is kept under {self.ckpt_root}")
            (loss / self.cfg.grad_accum).backward()
        return parts

    def end_epoch(self) -> None:
        """Epoch end (or max_steps): validate, checkpoint (the loggers then draw and flush)."""
        state = self.state
        val = evaluate_split(self.wrapped, self.loaders["validation"], self.objective, self.device,
                             self.cfg.precision, self.ddp, self.cfg.val_batches)
        state.epoch, state.micro_done = state.epoch + 1, 0
        self.log({"epoch": state.epoch - 1, "step": state.step, "split": "validation", **val})
        self.bar.log(f"epoch {state.epoch}: validation loss {val['loss']:.4f}")
        if val["loss"] < state.best_val:
            state.best_val, state.best_epoch = val["loss"], state.epoch
            self.save("best")
        self.save("last")

    def close(self) -> Path:
        self.ddp.barrier()
        if self.ddp.world > 1:
            dist.destroy_process_group()
        return self.run_dir


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, loader: DataLoader, objective: Objective, device: torch.device,
                   precision: str, ddp: Distributed, max_batches: int = 0) -> dict[str, float]:
    """Token-weighted mean of every metric over a split (summed across ranks)."""
    model.eval()
    names: list[str] = []
    totals: list[float] = []
    count = 0.0
    for i, batch in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        codes, mask = batch["codes"].to(device), batch["mask"].to(device)
        with autocast(device, precision):
            logits = model(codes)
        _, parts = objective(logits, codes, mask)
        weight = float(mask[:, 1:].sum())
        if not names:
            names, totals = list(parts), [0.0] * len(parts)
        totals = [t + parts[n] * weight for t, n in zip(totals, names)]
        count += weight
    summed = ddp.all_sum(torch.tensor([*totals, count], dtype=torch.float64))
    if summed[-1] == 0:
        raise PianogenError("the validation split has no windows: use more data or a shorter data.window")
    return {n: float(v / summed[-1]) for n, v in zip(names, summed[:-1])}
