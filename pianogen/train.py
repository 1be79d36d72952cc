"""The token-model trainer: ``pianogen train RECIPE`` (and under torchrun, DDP).

Exact resume: the epoch's window order is a pure function of (seed, epoch), checkpoints
record how many micro-batches of the epoch are done, and RNG states are restored, so a
resumed run follows the trajectory of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from pianogen import checkpoint, pipeline
from pianogen import resume as resuming
from pianogen.codec_prepare import train_missing_codec
from pianogen.device import pick_device
from pianogen.distributed import Distributed, autocast, init_distributed
from pianogen.errors import PianogenError
from pianogen.fetch.run_codec import record_codec
from pianogen.interfaces import LossContext
from pianogen.paths import atomic_write_bytes
from pianogen.recipe import Recipe, dump_toml, recorded_raw
from pianogen.runlock import run_lock


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's share of each global batch, in an order fixed by (seed, epoch); can skip done batches."""

    def __init__(self, n_items: int, global_batch: int, ddp: Distributed, seed: int, shuffle: bool,
                 drop_last: bool) -> None:
        self.n_items, self.global_batch, self.ddp = n_items, global_batch, ddp
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.skip = 0, 0
        self.used = len(self)  # batches of an epoch actually yielded (trainer: whole optimizer steps only)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        full, rest = divmod(self.n_items, self.global_batch)
        return full + (0 if self.drop_last or rest < self.ddp.world else 1)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n_items, generator=torch.Generator().manual_seed(self.seed + self.epoch))
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
    warmup = max(1, round(cfg.warmup * total_steps))
    if cfg.schedule == "cosine":
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))
    else:
        def factor(step: int) -> float:
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def train(recipe: Recipe, resume: bool = False, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> Path:
    """Train the recipe's token model; returns the run directory. ``on_step(step)`` runs after each step.

    The run directory is locked for the whole training: a second training of it stops with one line."""
    with run_lock(recipe.run_dir(), enabled=int(os.environ.get("RANK", "0")) == 0):
        return _train(recipe, resume, progress, on_step)


def _train(recipe: Recipe, resume: bool, progress: bool, on_step: Callable[[int], None] | None) -> Path:
    from pianogen.data.windows import WindowDataset, check_window, iter_windows
    from pianogen.plots import plot_losses

    device = pick_device(recipe.run.device)
    ddp = init_distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    run_dir = recipe.run_dir()
    ckpt_root = run_dir / "checkpoints"
    last = checkpoint.find(ckpt_root, "last")
    if last is not None and not resume:
        raise PianogenError(f"{run_dir} already has checkpoints: pass --resume to continue, "
                            f"or choose another run.dir")
    if resume and last is None:
        raise PianogenError(f"nothing to resume: no checkpoint under {ckpt_root}")
    if resume:
        resuming.check_resume_settings(recipe, run_dir)

    torch.manual_seed(recipe.run.seed)
    # Rank 0 prepares the codec, corpus and token cache; the others then find them ready.
    if ddp.main:
        train_missing_codec(recipe, progress=progress)
        codec = pipeline.build_codec(recipe, device)
        cache = pipeline.build_token_cache(recipe, codec, progress=progress)
    ddp.barrier()
    if not ddp.main:
        codec = pipeline.build_codec(recipe, device)
        cache = pipeline.build_token_cache(recipe, codec, progress=False)

    torch.manual_seed(recipe.run.seed)
    levels, cfg = recipe.codec.levels, recipe.train
    check_window(cache, recipe.data.window)  # before the model allocates anything of window size
    model = pipeline.build_token_model(recipe, codec).to(device)
    datasets = {split: WindowDataset(cache, split, levels, recipe.data.window, recipe.data.window_overlap)
                for split in ("train", "validation")}
    if len(datasets["train"]) < cfg.batch_size:
        raise PianogenError(f"only {len(datasets['train'])} training windows for train.batch_size = "
                            f"{cfg.batch_size}: use more data or a smaller batch or window")
    if cfg.batch_size % ddp.world:
        raise PianogenError(f"train.batch_size = {cfg.batch_size} does not split over {ddp.world} processes")
    samplers = {split: EpochBatchSampler(len(ds), cfg.batch_size, ddp, recipe.run.seed, shuffle=split == "train",
                                         drop_last=split == "train") for split, ds in datasets.items()}
    workers = recipe.data.num_workers
    # Own generators: creating an epoch's iterator must not draw from the global RNG (exact resume).
    loaders = {split: DataLoader(ds, batch_sampler=samplers[split], num_workers=workers,
                                 persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(recipe.run.seed))
               for split, ds in datasets.items()}

    losses = pipeline.build_losses(recipe)
    train_codes = lambda: (b["codes"] for b in  # noqa: E731
                           iter_windows(cache, "train", codec.n_levels, recipe.data.window, cfg.batch_size))
    for _, _, loss in losses:
        loss.to(device).prepare(LossContext(codec, levels, cache.dir, train_codes, device))
    objective = Objective(losses)

    micro_per_epoch = len(samplers["train"])
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    if steps_per_epoch == 0:
        raise PianogenError(f"train.grad_accum = {cfg.grad_accum} exceeds the {micro_per_epoch} micro-batches "
                            f"of an epoch")
    # An epoch's leftover micro-batches (fewer than grad_accum) are not drawn at all: their gradients
    # would never reach an optimizer step and would leak into the next epoch's first one.
    samplers["train"].used = steps_per_epoch * cfg.grad_accum
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = make_optimizer(model, recipe, device)
    scheduler = make_scheduler(optimizer, recipe, total_steps)
    step, epoch, micro_done, best_val = 0, 0, 0, math.inf
    # The open logging window: per-metric sums over its steps so far. Kept in checkpoints, so the first
    # average logged after a resume covers the same log_every steps as in an uninterrupted run.
    sums: dict[str, float] = defaultdict(float)
    window_steps = 0
    if resume:
        checkpoint.load_weights(last, model)
        meta, state = checkpoint.load_meta(last), checkpoint.load_trainer_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, epoch, micro_done, best_val = meta["step"], meta["epoch"], meta["micro_done"], meta["best_val"]
        window = state.get("log_window", {"sums": {}, "steps": 0})  # older checkpoints: an empty window
        sums.update(window["sums"])
        window_steps = window["steps"]

    wrapped = torch.compile(model) if cfg.compile else model
    if ddp.world > 1:
        wrapped = DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    metrics_path = run_dir / "metrics.jsonl"
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "recipe.toml", dump_toml(recorded_raw(recipe)).encode())
        record_codec(run_dir, recipe)  # by content hash, so eval/generate elsewhere find the same codec
        if resume:  # forget what was logged after the checkpoint (and a line cut by a kill): those steps run again
            atomic_write_bytes(metrics_path, resuming.metrics_up_to(metrics_path, step))
        else:
            metrics_path.unlink(missing_ok=True)

    def save(tag: str) -> None:
        if not ddp.main:
            return
        meta = {"step": step, "epoch": epoch, "micro_done": micro_done, "best_val": best_val,
                "codec_name": recipe.codec.name, "codec": codec.identity(), "levels": levels,
                "model": recipe.model.name, "model_config": recipe.model.options,
                "vocab_size": codec.codebook_size, "block_size": recipe.data.window}
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                 "log_window": {"sums": dict(sums), "steps": window_steps}}
        checkpoint.save(ckpt_root, tag, model, meta, state)

    bar = _Progress(enabled=progress and ddp.main, total=total_steps, done=step)
    tokens_per_micro = cfg.batch_size * levels * recipe.data.window
    with bar:
        while step < total_steps and epoch < cfg.epochs:
            samplers["train"].set_epoch(epoch, skip=micro_done)
            wrapped.train()
            # tokens/s is timed from here (validation and resumes restart the clock); sums span epochs
            window_start, window_tokens = time.perf_counter(), 0
            for batch in loaders["train"]:
                codes = batch["codes"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                sync = (micro_done + 1) % cfg.grad_accum == 0
                with (contextlib.nullcontext() if sync or ddp.world == 1 else wrapped.no_sync()):
                    with autocast(device, cfg.precision):
                        logits = wrapped(codes)
                    loss, parts = objective(logits, codes, mask)
                    if not math.isfinite(parts["loss"]):
                        raise PianogenError(f"loss became {parts['loss']} at step {step} (epoch {epoch}); "
                                            f"the last good checkpoint is kept under {ckpt_root}")
                    (loss / cfg.grad_accum).backward()
                micro_done += 1
                window_tokens += tokens_per_micro
                for key, value in parts.items():
                    sums[key] += value / cfg.grad_accum
                if not sync:
                    continue
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                window_steps += 1
                if step % cfg.log_every == 0 or step == total_steps:
                    elapsed = time.perf_counter() - window_start
                    record = {"epoch": epoch, "step": step, "split": "train",
                              **{k: v / window_steps for k, v in sums.items()},
                              "lr": scheduler.get_last_lr()[0], "tokens_per_s": window_tokens / elapsed}
                    if ddp.main:
                        append_metrics(metrics_path, record)
                    bar.update(step, record)
                    window_start, window_tokens, window_steps = time.perf_counter(), 0, 0
                    sums.clear()
                else:
                    bar.update(step, None)
                if cfg.save_every and step % cfg.save_every == 0:
                    save("last")
                if on_step is not None:
                    on_step(step)
                if step >= total_steps:
                    break
            # Epoch end (or max_steps): validate, checkpoint, plot.
            val = evaluate_split(wrapped, loaders["validation"], objective, device, cfg.precision, ddp,
                                 cfg.val_batches)
            epoch, micro_done = epoch + 1, 0
            if ddp.main:
                append_metrics(metrics_path, {"epoch": epoch - 1, "step": step, "split": "validation", **val})
                bar.log(f"epoch {epoch}: validation loss {val['loss']:.4f}")
            if val["loss"] < best_val:
                best_val = val["loss"]
                save("best")
            save("last")
            if ddp.main:
                plot_losses(metrics_path, run_dir / "loss.png")
    ddp.barrier()
    if ddp.world > 1:
        dist.destroy_process_group()
    return run_dir


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


class _Progress:
    """A rich bar with loss, lr, tokens/s and ETA; silent off rank 0."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.progress.add_task("train", total=total, completed=done, info="")

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, step: int, record: dict[str, Any] | None) -> None:
        if not self.enabled:
            return
        info = {}
        if record is not None:
            info["info"] = (f"loss {record['loss']:.3f}  lr {record['lr']:.2e}  "
                            f"{record['tokens_per_s']:,.0f} tok/s")
        self.progress.update(self.task, completed=step, **info)

    def log(self, text: str) -> None:
        if self.enabled:
            self.progress.console.log(text)
