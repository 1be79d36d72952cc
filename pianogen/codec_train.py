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
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import pianogen
from pianogen.codec_metrics import codebook_health, usage_warnings
from pianogen.data.audio import load_audio
from pianogen.data.sources import open_source
from pianogen.device import pick_device
from pianogen.distributed import autocast, init_distributed
from pianogen.errors import PianogenError
from pianogen.interfaces import TrainableCodec
from pianogen.metrics import mel_l1, stft_distance
from pianogen.paths import expand
from pianogen.plots import plot_losses
from pianogen.recipe import Recipe

ADV_WEIGHT, FEAT_WEIGHT = 1.0, 3.0  # adversarial and feature-matching weights (as encodec)
POOL_SECONDS = 1200.0  # audio kept in memory to cut segments from; bigger corpora rotate through it
ROTATE_EVERY = 50  # steps between swapping one pooled piece for another
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


class SegmentSampler:
    """Random fixed-length segments FloatTensor[B, 1, L] from a bounded pool of loaded pieces."""

    def __init__(self, paths: list[Path], sample_rate: int, length: int, generator: random.Random,
                 pooled: list[str] | None = None):
        """``pooled``: the pool of a saved run (``pool_paths``), restored as it was instead of drawn anew."""
        self._load = lambda p: load_audio(p, sample_rate)[0]  # [S]
        self.paths, self.length, self.rng = paths, length, generator
        self.pool: list[torch.Tensor] = []
        self.pool_paths: list[str] = []
        if pooled is not None:
            for path in pooled:
                self.pool.append(self._load(path))
                self.pool_paths.append(path)
        else:
            order = paths[:]
            self.rng.shuffle(order)
            seconds = 0.0
            for path in order:
                if self.pool and seconds >= POOL_SECONDS:
                    break
                wav = self._load(path)
                if wav.numel() >= length:
                    self.pool.append(wav)
                    self.pool_paths.append(str(path))
                    seconds += wav.numel() / sample_rate
        if not self.pool:
            raise PianogenError(f"no training audio at least {length / sample_rate:.2f} s long")
        self.rotates = len(self.pool) < len(paths)

    def rotate(self) -> None:
        """Replace one pooled piece by a random piece, so a large corpus is all seen over time."""
        if self.rotates:
            path = self.rng.choice(self.paths)
            wav = self._load(path)
            if wav.numel() >= self.length:
                slot = self.rng.randrange(len(self.pool))
                self.pool[slot], self.pool_paths[slot] = wav, str(path)

    def batch(self, batch_size: int, rng: random.Random | None = None) -> torch.Tensor:
        rng = rng or self.rng
        rows = []
        for _ in range(batch_size):
            wav = rng.choice(self.pool)
            start = rng.randrange(wav.numel() - self.length + 1)
            rows.append(wav[start : start + self.length])
        return torch.stack(rows).unsqueeze(1)


def _train_paths(recipe: Recipe) -> list[Path]:
    train = [p.path for p in open_source(recipe.data).pieces() if p.split == "train"]
    if not train:
        raise PianogenError(f"data source '{recipe.data.source}' has no 'train' pieces")
    return train


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


def _rng_state(rngs: dict[str, random.Random], sampler: SegmentSampler) -> dict[str, Any]:
    """Everything random in training, so that a resumed run continues exactly as an unbroken one."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch_rng": torch.get_rng_state(), "python_rng": {k: r.getstate() for k, r in rngs.items()},
             "numpy_rng": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss], "pool": sampler.pool_paths}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any], rngs: dict[str, random.Random]) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    for key, rng in rngs.items():
        rng.setstate(state["python_rng"][key])
    kind, keys, pos, has_gauss, gauss = state["numpy_rng"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))


def train_codec(recipe: Recipe, resume: bool = False, progress: bool = True) -> Path:
    """Train ``recipe.codec`` with ``recipe.codec_train``; returns the checkpoint path. Under torchrun
    each process draws batch_size / world segments (DDP; gloo on CPU, NCCL on CUDA)."""
    cfg = recipe.codec_train
    options: dict[str, Any] = {k: v for k, v in recipe.codec.options.items() if k != "checkpoint"}
    out = output_path(recipe)
    state_path = trainer_state_path(out)
    resuming = resume and out.is_file() and state_path.is_file()
    if resume and not resuming:
        raise PianogenError(f"nothing to resume: {out} or {state_path} is missing")
    ddp = init_distributed(pick_device(recipe.run.device))  # gloo for a CPU run even where CUDA exists
    if cfg.batch_size % ddp.world:
        raise PianogenError(f"codec_train.batch_size = {cfg.batch_size} does not split over {ddp.world} processes")

    torch.manual_seed(recipe.run.seed)
    # "steps" picks the level count and is shared by all ranks (every rank must run the same codebooks);
    # "segments" draws this rank's audio
    rngs = {"steps": random.Random(recipe.run.seed), "segments": random.Random(recipe.run.seed + 1000 * ddp.rank)}
    device = pick_device(recipe.run.device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
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

    step, state = 0, None
    if resuming:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        step = state["step"]
        opt.load_state_dict(state["opt"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_opt"])

    def save() -> None:
        codec.save(out)
        state = {"step": step, "opt": opt.state_dict(), "seed": recipe.run.seed, **_rng_state(rngs, sampler)}
        if disc is not None:
            state |= {"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()}
        tmp = state_path.with_name(f".{state_path.name}.tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, state_path)
        if metrics_path(out).stat().st_size:
            plot_losses(metrics_path(out), out.with_name(f"{out.stem}.loss.png"))

    length = round(cfg.segment_seconds * codec.sample_rate)
    per_rank = cfg.batch_size // ddp.world
    paths = _train_paths(recipe)
    if state is not None and "python_rng" in state and ddp.world == 1:
        _set_rng_state(state, rngs)  # exact: the same draws, the same pool, as if never stopped
        sampler = SegmentSampler(paths, codec.sample_rate, length, rngs["segments"], pooled=state["pool"])
    else:
        if state is not None:  # a state of an older version, or another world size: continue, reseeded
            torch.set_rng_state(state["torch_rng"])
            for rng in rngs.values():
                rng.seed(recipe.run.seed + 1000 * ddp.rank + step)
        sampler = SegmentSampler(paths, codec.sample_rate, length, rngs["segments"])
    # drawn with their own generator, so measuring never changes what training sees
    health_batch = sampler.batch(HEALTH_SEGMENTS, random.Random(recipe.run.seed + 1))
    if not resuming and callable(getattr(codec, "init_codebooks", None)):
        codec.init_codebooks(sampler.batch(per_rank).to(device))  # so even steps = 0 gives usable codes
    wrapped, disc_wrapped = codec, disc
    if ddp.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # codebooks stay in sync through their all-reduced statistics (rvq.py), not by broadcasting buffers
        wrapped = DDP(codec, device_ids=ids, broadcast_buffers=False)
        if disc is not None:
            disc_wrapped = DDP(disc, device_ids=ids)
    if ddp.main:
        out.parent.mkdir(parents=True, exist_ok=True)
    log = metrics_path(out).open("a" if resuming else "w") if ddp.main else open(os.devnull, "w")
    saved_step = step if resuming else None
    columns = (TextColumn("codec"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())
    with log, Progress(*columns, disable=not (progress and ddp.main), transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, info="")
        tic = time.perf_counter()
        while step < cfg.steps:
            real = sampler.batch(per_rank).to(device)
            draw = rngs["steps"]
            n_q = draw.randint(1, codec.n_levels) if draw.random() < cfg.quantizer_dropout else codec.n_levels
            with autocast(device, cfg.precision):
                fake, commit = wrapped(real, n_q)
            fake = fake[..., : real.shape[-1]].float()  # the losses' FFTs run in float32
            parts = {
                "wav_l1": F.l1_loss(fake, real), "mel": mel_l1(real, fake, codec.sample_rate),
                "stft": stft_distance(real, fake), "commit": commit.float(),
            }
            loss = cfg.wav_weight * parts["wav_l1"] + cfg.mel_weight * parts["mel"] \
                + cfg.stft_weight * parts["stft"] + cfg.commit_weight * parts["commit"]
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
                parts["disc"] = _disc_loss(disc_wrapped, real, fake)
                disc_opt.zero_grad(set_to_none=True)
                parts["disc"].backward()
                disc_opt.step()
            step += 1
            if step % ROTATE_EVERY == 0:
                sampler.rotate()
            if ddp.main and (step % cfg.log_every == 0 or step == cfg.steps):
                seconds = time.perf_counter() - tic
                health = _codebook_health(codec, health_batch.to(device))
                row = {"step": step, "split": "train", "loss": loss.item(), "n_q": n_q, "lr": cfg.lr,
                       **{k: v.item() for k, v in parts.items()},
                       "codes_used": [h["codes_used"] for h in health],
                       "perplexity": [round(h["perplexity"], 2) for h in health],
                       "audio_s_per_s": cfg.log_every * cfg.batch_size * cfg.segment_seconds / max(seconds, 1e-9)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                used = " ".join(f"{h['used_fraction']:.0%}" for h in health)
                bar.update(task, info=f"loss {row['loss']:.3f} mel {row['mel']:.3f} codes used {used}")
                tic = time.perf_counter()
            if step % cfg.save_every == 0 or step == cfg.steps:
                if ddp.main:
                    save()
                saved_step = step
            bar.update(task, completed=step)
    if saved_step != step and ddp.main:  # steps = 0: still write the (untrained) codec
        save()
    if ddp.world > 1:
        _check_ranks_agree(codec)
    if ddp.main:
        for line in usage_warnings(_codebook_health(codec, health_batch.to(device)), codec.codebook_size):
            print(f"warning: {out.name}: {line}", file=sys.stderr)
    ddp.barrier()
    return out


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
