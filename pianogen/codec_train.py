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

import contextlib
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import pianogen
from pianogen.codec_metrics import codebook_health, usage_warnings
from pianogen.codec_segments import SegmentSampler
from pianogen.data.sources import open_source
from pianogen.device import pick_device
from pianogen.distributed import autocast
from pianogen.errors import PianogenError
from pianogen.interfaces import TrainableCodec
from pianogen.metrics import mel_l1, stft_distance
from pianogen.paths import expand, remove_stale_temps
from pianogen.progress import StepBar
from pianogen.recipe import Recipe
from pianogen.runlock import file_lock
from pianogen.trainloop import (
    MetricsLog,
    Trainer,
    TrainState,
    capture_rng,
    join_processes,
    lr_factor,
    restore_rng,
    save_trainer_state,
)

ADV_WEIGHT, FEAT_WEIGHT = 1.0, 3.0  # adversarial and feature-matching weights (as encodec)
HEALTH_SEGMENTS = 32  # fixed segments encoded at every log step to count the codes each level uses


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


def _train_groups(recipe: Recipe) -> tuple[dict[str, list[Path]], dict[str, float]]:
    """The source's training files by group, and the groups' shares ({} for one corpus)."""
    source = open_source(recipe.data)
    shares = source.shares()
    groups: dict[str, list[Path]] = {}
    for piece in source.pieces():
        if piece.split == "train":  # without shares every piece is drawn alike, whatever its group
            groups.setdefault(piece.group if shares else "", []).append(piece.path)
    lacking = [g for g in shares if not groups.get(g)] or ([] if groups else [""])
    if lacking:
        part = f" (its part '{lacking[0]}')" if lacking[0] else ""
        raise PianogenError(f"data source '{recipe.data.source}'{part} has no 'train' pieces")
    return groups, shares


def _hinge_losses(disc: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator (adversarial, feature matching) losses against the MS-STFT discriminator, whose own
    weights get no gradient here (under DDP their gradient hooks would fire outside their own step)."""
    disc.requires_grad_(False)
    try:
        logits_fake, fmaps_fake = disc(fake)
        with torch.no_grad():
            _, fmaps_real = disc(real)
    finally:
        disc.requires_grad_(True)
    adv = torch.stack([F.relu(1 - lf).mean() for lf in logits_fake]).mean()
    feat = torch.stack([
        (fr.detach() - ff).abs().mean() / (fr.detach().abs().mean() + 1e-8)
        for fm_r, fm_f in zip(fmaps_real, fmaps_fake) for fr, ff in zip(fm_r, fm_f)
    ]).mean()
    return adv, feat


def _disc_loss(disc: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator; real and fake go through in one forward, as DDP wants."""
    logits, _ = disc(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    return torch.stack([F.relu(1 - lg[:n]).mean() + F.relu(1 + lg[n:]).mean() for lg in logits]).mean()


def train_codec(recipe: Recipe, resume: bool = False, progress: bool = True, force: bool = False) -> Path:
    """Train ``recipe.codec`` with ``recipe.codec_train``; returns the checkpoint path. Under torchrun
    each process draws batch_size / world segments (DDP; gloo on CPU, NCCL on CUDA).

    One training per codec file: ``<codec>.lock`` is held throughout. A codec file that exists is continued
    (``resume``, with the recorded settings only) or replaced (``force``), never overwritten unasked."""
    out = output_path(recipe)
    out.parent.mkdir(parents=True, exist_ok=True)
    main = int(os.environ.get("RANK", "0")) == 0
    lock = file_lock(out.with_name(f"{out.name}.lock"), f"{out} is being trained by another process") \
        if main else contextlib.nullcontext()
    with lock:
        for path in (out, trainer_state_path(out), metrics_path(out)):
            remove_stale_temps(path)  # a killed training's half-written files (it holds the lock: none is live)
        if out.is_file() and not resume and not force:
            done = steps_done(recipe)
            what = f"a codec trained for {done} steps" if done is not None else "a codec"
            raise PianogenError(f"{out} already holds {what}: --resume continues its training, --force replaces it "
                                f"(runs tokenized with it would then need it again)")
        trainer = CodecTrainer(recipe, resume, progress)
        trainer.fit()
        return trainer.close()


def codec_settings(recipe: Recipe) -> dict[str, Any]:
    """What a codec's training depends on, as ``table.key`` -> value: --resume must not change any of it."""
    flat = {"run.seed": recipe.run.seed, "codec.name": recipe.codec.name}
    flat.update({f"codec.{k}": v for k, v in recipe.codec.options.items()})
    for table in ("data", "codec_train"):
        flat.update({f"{table}.{k}": v for k, v in dataclasses.asdict(getattr(recipe, table)).items()
                     if f"{table}.{k}" not in RESUMABLE_CODEC_KEYS})
    if recipe.codec_train.schedule == "constant":  # only a constant lr does not depend on the length: extendable
        flat.pop("codec_train.steps")
    return json.loads(json.dumps(flat, default=str))  # as the trainer state stores it


# change how often it reports or saves, not what it trains
RESUMABLE_CODEC_KEYS = ("codec_train.log_every", "codec_train.save_every", "data.num_workers")


def check_codec_resume(recipe: Recipe, saved: dict[str, Any]) -> None:
    """PianogenError naming the settings --resume would change (states saved before settings were kept pass)."""
    if "settings" not in saved:
        return
    recorded, given = json.loads(saved["settings"]), codec_settings(recipe)
    changed = [k for k in sorted(set(recorded) | set(given)) if recorded.get(k, "unset") != given.get(k, "unset")]
    if changed:
        shown = ", ".join(f"{k} {recorded.get(k, 'unset')!r} -> {given.get(k, 'unset')!r}" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise PianogenError(f"--resume would change the codec's recorded training: {shown}{more}; resume with the "
                            f"recorded settings, or train a new codec (codec.checkpoint) or --force")


class CodecTrainer(Trainer):
    """A codec's training: setup in ``__init__``, then ``fit`` (trainloop.Trainer) alternates ``run_epoch``
    (the steps up to the next checkpoint) and ``end_epoch`` (the checkpoint and the loss curve)."""

    def __init__(self, recipe: Recipe, resume: bool, progress: bool) -> None:
        self.recipe, self.cfg = recipe, recipe.codec_train
        self.out = output_path(recipe)
        self.state_path = trainer_state_path(self.out)
        resuming = resume and self.out.is_file() and self.state_path.is_file()
        if resume and not resuming:
            raise PianogenError(f"nothing to resume: {self.out} or {self.state_path} is missing")
        # gloo for a CPU run even where CUDA exists
        self.device, self.ddp = join_processes(pick_device(recipe.run.device))
        if self.cfg.batch_size % self.ddp.world:
            raise PianogenError(f"codec_train.batch_size = {self.cfg.batch_size} does not split over "
                                f"{self.ddp.world} processes")
        torch.manual_seed(recipe.run.seed)
        # "steps" picks the level count and is shared by all ranks (every rank must run the same codebooks);
        # "segments" draws this rank's audio
        self.rngs = {"steps": random.Random(recipe.run.seed),
                     "segments": random.Random(recipe.run.seed + 1000 * self.ddp.rank)}
        saved = pianogen.load_tensors(self.state_path, "a codec trainer state") if resuming else None
        if saved is not None:
            check_codec_resume(recipe, saved)
        self._build_models(resuming)
        if saved is not None and "codec" in saved:
            # the weights saved with the state, not the codec file: a kill between the two writes leaves the
            # state one checkpoint ahead of the file, and only the state's weights resume exactly; the file is
            # brought up to the state's step at once
            self.codec.load_state_dict(saved["codec"])
            if int(os.environ.get("RANK", "0")) == 0:
                self.codec.save(self.out)
        self.state = TrainState() if saved is None else self._restore(saved)
        self.sampler = self._segments(saved)
        # drawn with their own generator, so measuring never changes what training sees
        self.health_batch = self.sampler.batch(HEALTH_SEGMENTS, random.Random(recipe.run.seed + 1))
        if not resuming:  # TrainableCodec.init_codebooks: so even steps = 0 gives usable codes
            self.codec.init_codebooks(self.sampler.batch(self.cfg.batch_size // self.ddp.world).to(self.device))
        self.wrapped, self.disc_wrapped = self.codec, self.disc
        if self.ddp.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # codebooks stay in sync through their all-reduced statistics (rvq.py), not by broadcasting buffers
            self.wrapped = DDP(self.codec, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                self.disc_wrapped = DDP(self.disc, device_ids=ids)
        self.metrics = MetricsLog(metrics_path(self.out), self.out.with_name(f"{self.out.stem}.loss.png"),
                                  enabled=self.ddp.main)
        self.metrics.start(self.state.step if resuming else None)
        self.saved_step = self.state.step if resuming else None
        self.bar = StepBar("codec", self.cfg.steps, self.state.step, enabled=progress and self.ddp.main)
        self.clock = time.perf_counter()

    def _build_models(self, resuming: bool) -> None:
        """The codec (from its checkpoint when resuming), its optimizer, and the discriminator if asked for."""
        recipe, cfg, device = self.recipe, self.cfg, self.device
        options: dict[str, Any] = {k: v for k, v in recipe.codec.options.items() if k != "checkpoint"}
        extra = {"checkpoint": str(self.out)} if resuming else {}
        self.codec = pianogen.get_codec(recipe.codec.name, **options, **extra).to(device).train()
        if not isinstance(self.codec, TrainableCodec):
            raise PianogenError(f"codec '{recipe.codec.name}' cannot be trained (it is not a TrainableCodec)")
        self.opt = torch.optim.Adam(self.codec.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.lr_factor = lr_factor(cfg.schedule, cfg.warmup, cfg.steps)
        self.disc = self.disc_opt = None
        if cfg.discriminator:
            from encodec.msstftd import MultiScaleSTFTDiscriminator

            self.disc = MultiScaleSTFTDiscriminator(filters=32).to(device).train()
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))

    def _restore(self, saved: dict[str, Any]) -> TrainState:
        self.opt.load_state_dict(saved["opt"])
        if self.disc is not None and "disc" in saved:
            self.disc.load_state_dict(saved["disc"])
            self.disc_opt.load_state_dict(saved["disc_opt"])
        return TrainState.from_dict(saved)

    def _segments(self, saved: dict[str, Any] | None) -> SegmentSampler:
        """The segment sampler: as it was when ``saved`` was written (its pool, every generator), else new."""
        length = round(self.cfg.segment_seconds * self.codec.sample_rate)
        (groups, shares), seed = _train_groups(self.recipe), self.recipe.run.seed
        sampler = lambda pooled=None, periods=None: SegmentSampler(  # noqa: E731
            groups, shares, self.codec.sample_rate, length, self.rngs["segments"], pooled, periods)
        rng = None if saved is None else _saved_rng(saved)
        if rng is not None and "python" in rng and self.ddp.world == 1:
            restore_rng(rng, self.rngs)  # exact: the same draws, the same pool, as if never stopped
            pooled = saved["pool"]  # pianogen 0.1 kept one corpus's pool as a list
            return sampler(pooled if isinstance(pooled, dict) else {"": pooled}, saved.get("rotation_periods"))
        if rng is not None:  # a state of an older version, or another world size: continue, reseeded
            torch.set_rng_state(rng["torch"])
            for generator in self.rngs.values():
                generator.seed(seed + 1000 * self.ddp.rank + self.state.step)
        return sampler()

    def finished(self) -> bool:
        return self.state.step >= self.cfg.steps

    def run_epoch(self) -> None:
        """Steps up to the next checkpoint (every save_every steps, and the last)."""
        while True:
            self._step()
            step = self.state.step
            if step % self.cfg.save_every == 0 or step == self.cfg.steps:
                return
            self.bar.update(step)

    def _step(self) -> None:
        cfg, codec = self.cfg, self.codec
        real = self.sampler.batch(cfg.batch_size // self.ddp.world).to(self.device)
        draw = self.rngs["steps"]
        n_q = draw.randint(1, codec.n_levels) if draw.random() < cfg.quantizer_dropout else codec.n_levels
        with autocast(self.device, cfg.precision):
            fake, commit = self.wrapped(real, n_q)
        fake = fake[..., : real.shape[-1]].float()  # the losses' FFTs run in float32
        parts = {
            "wav_l1": F.l1_loss(fake, real), "mel": mel_l1(real, fake, codec.sample_rate),
            "stft": stft_distance(real, fake), "commit": commit.float(),
        }
        loss = cfg.wav_weight * parts["wav_l1"] + cfg.mel_weight * parts["mel"] \
            + cfg.stft_weight * parts["stft"] + cfg.commit_weight * parts["commit"]
        adversarial = self.disc is not None and self.state.step >= cfg.discriminator_start
        if adversarial:
            parts["adv"], parts["feat"] = _hinge_losses(self.disc, real, fake)
            loss = loss + ADV_WEIGHT * parts["adv"] + FEAT_WEIGHT * parts["feat"]
        if not torch.isfinite(loss):
            kept = f"the last checkpoint {self.out} (step {self.saved_step}) is kept" \
                if self.saved_step is not None else "no checkpoint was written"
            raise PianogenError(f"codec training diverged: loss is {loss.item()} at step {self.state.step}; {kept}")
        lr = cfg.lr * self.lr_factor(self.state.step)  # a function of the step alone: resume needs no state
        for group in self.opt.param_groups + (self.disc_opt.param_groups if self.disc_opt else []):
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if adversarial:
            parts["disc"] = _disc_loss(self.disc_wrapped, real, fake)
            self.disc_opt.zero_grad(set_to_none=True)
            parts["disc"].backward()
            self.disc_opt.step()
        self.state.step += 1
        self.sampler.rotate(self.state.step)
        if self.ddp.main and (self.state.step % cfg.log_every == 0 or self.state.step == cfg.steps):
            self._log(loss, n_q, parts)

    def _log(self, loss: torch.Tensor, n_q: int, parts: dict[str, torch.Tensor]) -> None:
        cfg, seconds = self.cfg, time.perf_counter() - self.clock
        health = _codebook_health(self.codec, self.health_batch.to(self.device))
        row = {"step": self.state.step, "split": "train", "loss": loss.item(), "n_q": n_q,
               "lr": self.opt.param_groups[0]["lr"],
               **{k: v.item() for k, v in parts.items()},
               "codes_used": [h["codes_used"] for h in health],
               "perplexity": [round(h["perplexity"], 2) for h in health],
               "audio_s_per_s": cfg.log_every * cfg.batch_size * cfg.segment_seconds / max(seconds, 1e-9)}
        self.metrics.append(row)
        used = " ".join(f"{h['used_fraction']:.0%}" for h in health)
        self.bar.update(self.state.step, f"loss {row['loss']:.3f} mel {row['mel']:.3f} codes used {used}")
        self.clock = time.perf_counter()

    def end_epoch(self) -> None:
        if self.ddp.main:
            self.save()
        self.saved_step = self.state.step
        self.bar.update(self.state.step)

    def save(self) -> None:
        """The trainer state (with the weights in it) first, then the codec file: whichever write a kill stops,
        --resume continues from a state whose weights, optimizer and generators belong together."""
        saved = {**self.state.to_dict(), "opt": self.opt.state_dict(), "seed": self.recipe.run.seed,
                 "rng": capture_rng(self.rngs), "pool": self.sampler.pool_paths,
                 "rotation_periods": self.sampler.rotation_periods, "codec": self.codec.state_dict(),
                 "settings": json.dumps(codec_settings(self.recipe))}
        if self.disc is not None:
            saved |= {"disc": self.disc.state_dict(), "disc_opt": self.disc_opt.state_dict()}
        save_trainer_state(self.state_path, saved)
        self.codec.save(self.out)
        self.metrics.plot()

    def close(self) -> Path:
        """After the last step: the (untrained, for steps = 0) codec is saved, ranks agree, code usage is checked."""
        if self.saved_step != self.state.step and self.ddp.main:
            self.save()
        if self.ddp.world > 1:
            _check_ranks_agree(self.codec)
        if self.ddp.main:
            for line in usage_warnings(_codebook_health(self.codec, self.health_batch.to(self.device)),
                                       self.codec.codebook_size):
                print(f"warning: {self.out.name}: {line}", file=sys.stderr)
        self.ddp.barrier()
        return self.out


def _saved_rng(saved: dict[str, Any]) -> dict[str, Any]:
    """A trainer state's random generators (``trainloop.capture_rng``); states of pianogen 0.1 kept them
    under keys of their own, and older ones the torch generator only."""
    if "rng" in saved:
        return saved["rng"]
    old = {"torch": saved["torch_rng"], "cuda": saved.get("cuda_rng"), "numpy": saved.get("numpy_rng"),
           "python": saved.get("python_rng")}
    return {key: value for key, value in old.items() if value is not None}


def _check_ranks_agree(codec: torch.nn.Module) -> None:
    """Every rank must end with the same weights and codebooks; a sum per tensor, compared across ranks."""
    import torch.distributed as dist

    sums = torch.stack([t.detach().double().sum() for t in codec.state_dict().values()]).cpu()
    gathered = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, sums)
    if any(not torch.allclose(g, sums, rtol=1e-9, atol=1e-9) for g in gathered):
        raise PianogenError("codec training: the processes' weights or codebooks diverged")


def _codebook_health(codec: torch.nn.Module, wav: torch.Tensor) -> list[dict[str, float]]:
    """Codes used and perplexity per level on the fixed health segments (the codec is put back in training mode)."""
    codec.eval()
    try:
        return codebook_health(codec.encode(wav), codec.codebook_size)
    finally:
        codec.train()
