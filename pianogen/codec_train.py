"""Train a codec on piano audio: ``pianogen codec train RECIPE``.

Losses: L1 waveform + multi-scale log-Mel + multi-resolution STFT + commitment; codebooks are
k-means initialised EMA codebooks with dead-code reset (inside the codec's quantizer);
quantizer dropout trains with a random number of levels so that decoding the first k works
for every k; optionally encodec's MS-STFT discriminator with hinge + feature-matching losses.

The codec must be a ``pianogen.interfaces.TrainableCodec``.
Weights go to ``<out>.safetensors``, trainer state (optimizers, step, RNG) to
``<out stem>.trainer.pt``, metrics to ``<out stem>.metrics.jsonl`` and their curve to
``<out stem>.loss.png``, all beside each other.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import pianogen
from pianogen.data.audio import load_audio
from pianogen.data.sources import open_source
from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.interfaces import TrainableCodec
from pianogen.metrics import mel_l1, stft_distance
from pianogen.paths import expand
from pianogen.plots import plot_losses
from pianogen.recipe import Recipe

WAV_WEIGHT, MEL_WEIGHT, STFT_WEIGHT, COMMIT_WEIGHT = 1.0, 1.0, 1.0, 1.0  # reconstruction loss mix
ADV_WEIGHT, FEAT_WEIGHT = 1.0, 3.0  # adversarial and feature-matching weights (as encodec)
POOL_SECONDS = 1200.0  # audio kept in memory to cut segments from; bigger corpora rotate through it
ROTATE_EVERY = 50  # steps between swapping one pooled piece for another


def output_path(recipe: Recipe) -> Path:
    """Where the recipe's trained codec goes: codec_train.out, else codec.checkpoint."""
    target = recipe.codec_train.out or recipe.codec.options.get("checkpoint", "")
    if not target:
        raise PianogenError("codec_train.out or codec.checkpoint must name where the trained codec goes")
    return expand(target)


def steps_done(recipe: Recipe) -> int | None:
    """Steps of the recipe's codec training recorded beside its checkpoint; None when it never saved."""
    state = trainer_state_path(output_path(recipe))
    if not state.is_file():
        return None
    # mmap: only the step is read, not the optimizer state (large for the reference-size codec)
    return int(torch.load(state, map_location="cpu", weights_only=True, mmap=True)["step"])


def trainer_state_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.trainer.pt")


def metrics_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.metrics.jsonl")


class SegmentSampler:
    """Random fixed-length segments FloatTensor[B, 1, L] from a bounded pool of loaded pieces."""

    def __init__(self, paths: list[Path], sample_rate: int, length: int, generator: random.Random):
        self._load = lambda p: load_audio(p, sample_rate)[0]  # [S]
        self.paths, self.length, self.rng = paths, length, generator
        order = paths[:]
        self.rng.shuffle(order)
        self.pool: list[torch.Tensor] = []
        seconds = 0.0
        for path in order:
            if self.pool and seconds >= POOL_SECONDS:
                break
            wav = self._load(path)
            if wav.numel() >= length:
                self.pool.append(wav)
                seconds += wav.numel() / sample_rate
        if not self.pool:
            raise PianogenError(f"no training audio at least {length / sample_rate:.2f} s long")
        self.rotates = len(self.pool) < len(paths)

    def rotate(self) -> None:
        """Replace one pooled piece by a random piece, so a large corpus is all seen over time."""
        if self.rotates:
            wav = self._load(self.rng.choice(self.paths))
            if wav.numel() >= self.length:
                self.pool[self.rng.randrange(len(self.pool))] = wav

    def batch(self, batch_size: int) -> torch.Tensor:
        rows = []
        for _ in range(batch_size):
            wav = self.rng.choice(self.pool)
            start = self.rng.randrange(wav.numel() - self.length + 1)
            rows.append(wav[start : start + self.length])
        return torch.stack(rows).unsqueeze(1)


def _train_paths(recipe: Recipe) -> list[Path]:
    train = [p.path for p in open_source(recipe.data).pieces() if p.split == "train"]
    if not train:
        raise PianogenError(f"data source '{recipe.data.source}' has no 'train' pieces")
    return train


def _hinge_losses(disc: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator (adversarial, feature matching) losses against the MS-STFT discriminator."""
    logits_fake, fmaps_fake = disc(fake)
    with torch.no_grad():
        _, fmaps_real = disc(real)
    adv = torch.stack([F.relu(1 - lf).mean() for lf in logits_fake]).mean()
    feat = torch.stack([
        (fr.detach() - ff).abs().mean() / (fr.detach().abs().mean() + 1e-8)
        for fm_r, fm_f in zip(fmaps_real, fmaps_fake) for fr, ff in zip(fm_r, fm_f)
    ]).mean()
    return adv, feat


def train_codec(recipe: Recipe, resume: bool = False, progress: bool = True) -> Path:
    """Train ``recipe.codec`` with ``recipe.codec_train``; returns the checkpoint path."""
    cfg = recipe.codec_train
    options: dict[str, Any] = {k: v for k, v in recipe.codec.options.items() if k != "checkpoint"}
    out = output_path(recipe)
    state_path = trainer_state_path(out)
    resuming = resume and out.is_file() and state_path.is_file()
    if resume and not resuming:
        raise PianogenError(f"nothing to resume: {out} or {state_path} is missing")

    torch.manual_seed(recipe.run.seed)
    rng = random.Random(recipe.run.seed)
    device = pick_device(recipe.run.device)
    extra = {"checkpoint": str(out)} if resuming else {}
    codec = pianogen.get_codec(recipe.codec.name, **options, **extra).to(device).train()
    if not isinstance(codec, TrainableCodec):
        raise PianogenError(f"codec '{recipe.codec.name}' cannot be trained (it is not a TrainableCodec)")
    opt = torch.optim.Adam(codec.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    disc = disc_opt = None
    if cfg.discriminator:
        from encodec.msstftd import MultiScaleSTFTDiscriminator

        disc = MultiScaleSTFTDiscriminator(filters=32).to(device).train()
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))

    step = 0
    if resuming:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        step = state["step"]
        opt.load_state_dict(state["opt"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_opt"])
        torch.set_rng_state(state["torch_rng"])
        rng.seed(state["seed"] + step)

    def save() -> None:
        codec.save(out)
        state = {"step": step, "opt": opt.state_dict(), "torch_rng": torch.get_rng_state(), "seed": recipe.run.seed}
        if disc is not None:
            state |= {"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()}
        tmp = state_path.with_name(f".{state_path.name}.tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, state_path)
        if metrics_path(out).stat().st_size:
            plot_losses(metrics_path(out), out.with_name(f"{out.stem}.loss.png"))

    length = round(cfg.segment_seconds * codec.sample_rate)
    sampler = SegmentSampler(_train_paths(recipe), codec.sample_rate, length, rng)
    if not resuming:
        codec.init_codebooks(sampler.batch(cfg.batch_size).to(device))  # so even steps = 0 gives usable codes
    out.parent.mkdir(parents=True, exist_ok=True)
    log = metrics_path(out).open("a" if resuming else "w")
    saved_step = step if resuming else None
    columns = (TextColumn("codec"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())
    with log, Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, info="")
        tic = time.perf_counter()
        while step < cfg.steps:
            real = sampler.batch(cfg.batch_size).to(device)
            n_q = rng.randint(1, codec.n_levels) if rng.random() < cfg.quantizer_dropout else codec.n_levels
            fake, commit = codec(real, n_q)
            fake = fake[..., : real.shape[-1]]
            parts = {
                "wav_l1": F.l1_loss(fake, real), "mel": mel_l1(real, fake, codec.sample_rate),
                "stft": stft_distance(real, fake), "commit": commit,
            }
            loss = WAV_WEIGHT * parts["wav_l1"] + MEL_WEIGHT * parts["mel"] + STFT_WEIGHT * parts["stft"] \
                + COMMIT_WEIGHT * parts["commit"]
            adversarial = disc is not None and step >= cfg.discriminator_start
            if adversarial:
                parts["adv"], parts["feat"] = _hinge_losses(disc, real, fake)
                loss = loss + ADV_WEIGHT * parts["adv"] + FEAT_WEIGHT * parts["feat"]
            if not torch.isfinite(loss):
                kept = f"the last checkpoint {out} (step {saved_step}) is kept" if saved_step is not None \
                    else "no checkpoint was written"
                raise PianogenError(f"codec training diverged: loss is {loss.item()} at step {step}; {kept}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if adversarial:
                logits_real, _ = disc(real)
                logits_fake, _ = disc(fake.detach())
                parts["disc"] = torch.stack([F.relu(1 - lr).mean() + F.relu(1 + lf).mean()
                                             for lr, lf in zip(logits_real, logits_fake)]).mean()
                disc_opt.zero_grad(set_to_none=True)
                parts["disc"].backward()
                disc_opt.step()
            step += 1
            if step % ROTATE_EVERY == 0:
                sampler.rotate()
            if step % cfg.log_every == 0 or step == cfg.steps:
                seconds = time.perf_counter() - tic
                row = {"step": step, "split": "train", "loss": loss.item(), "n_q": n_q, "lr": cfg.lr,
                       **{k: v.item() for k, v in parts.items()},
                       "audio_s_per_s": cfg.log_every * cfg.batch_size * cfg.segment_seconds / max(seconds, 1e-9)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.update(task, info=f"loss {row['loss']:.3f} mel {row['mel']:.3f}")
                tic = time.perf_counter()
            if step % cfg.save_every == 0 or step == cfg.steps:
                save()
                saved_step = step
            bar.update(task, completed=step)
    if saved_step != step:  # steps = 0: still write the (untrained) codec
        save()
    return out
