"""Train a codec on piano audio: ``pianogen codec train RECIPE``.

Losses: L1 waveform + multi-scale log-Mel + multi-resolution STFT + commitment; codebooks are
k-means initialised EMA codebooks with dead-code reset (inside the codec's quantizer);
quantizer dropout trains with a random number of levels so that decoding the first k works
for every k; optionally encodec's MS-STFT discriminator with hinge + feature-matching losses.

The codec must be a ``pianogen.interfaces.TrainableCodec``. The training runs on the shared lifecycle
(trainer_base.Trainer): its checkpoint is one folder, ``<out stem>.checkpoints/last/`` (weights, trainer state,
meta.json with the recorded settings), swapped in atomically; the codec file ``<out>`` is exported from it after
each checkpoint (a kill between the two resumes from the folder and exports again). Metrics go to the recipe's
loggers beside the codec: ``<out stem>.metrics.jsonl`` and ``<out stem>.loss.png`` (jsonl),
``<out stem>.tensorboard/`` (tensorboard). A ``<out stem>.trainer.pt`` of pianogen 0.1 still resumes.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import pianogen
from pianogen.data.sources import open_source
from pianogen.errors import PianogenError
from pianogen.evaluation.codec_metrics import codebook_health, usage_warnings
from pianogen.interfaces import TrainableCodec
from pianogen.paths import expand, remove_stale_temps
from pianogen.recipe import Recipe
from pianogen.training import checkpoint
from pianogen.training.codec_segments import SegmentSampler
from pianogen.training.distributed import autocast
from pianogen.training.loggers import LogPlace
from pianogen.training.metrics import mel_l1, stft_distance
from pianogen.training.resume import check_unchanged, codec_settings
from pianogen.training.trainer_base import Trainer
from pianogen.training.trainloop import lr_factor, restore_rng

ADV_WEIGHT, FEAT_WEIGHT = 1.0, 3.0  # adversarial and feature-matching weights (as encodec)
HEALTH_SEGMENTS = 32  # fixed segments encoded at every log step to count the codes each level uses


def output_path(recipe: Recipe) -> Path:
    """Where the recipe's trained codec goes: codec_train.out, else codec.checkpoint."""
    target = recipe.codec_train.out or recipe.codec.options.get("checkpoint", "")
    if not target:
        raise PianogenError("codec_train.out or codec.checkpoint must name where the trained codec goes")
    return expand(target)


def steps_done(recipe: Recipe) -> int | None:
    """Steps of the recipe's codec training recorded beside its codec file; None when it never saved."""
    return trained_steps(output_path(recipe))


def trained_steps(out: Path) -> int | None:
    """Steps recorded in the checkpoint of the codec file ``out`` (None without one)."""
    last = checkpoint.find(checkpoint_root(out), "last")
    if last is not None:
        return int(checkpoint.load_meta(last)["step"])
    legacy = legacy_state_path(out)
    if legacy.is_file():  # mmap: only the step is read, not the optimizer state
        return int(torch.load(legacy, map_location="cpu", weights_only=True, mmap=True)["step"])
    return None


def checkpoint_root(out: Path) -> Path:
    """The folder of the codec training's checkpoint: ``<out stem>.checkpoints`` (its tag is 'last')."""
    return out.with_name(f"{out.stem}.checkpoints")


def legacy_state_path(out: Path) -> Path:
    """Where pianogen 0.1 kept a codec's trainer state (weights inside), beside the codec file."""
    return out.with_name(f"{out.stem}.trainer.pt")


def metrics_path(out: Path) -> Path:
    return LogPlace(out.parent, f"{out.stem}.").path("metrics.jsonl")


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
    """Train ``recipe.codec`` with ``recipe.codec_train``; returns the codec file. Under torchrun each process
    draws batch_size / world segments (DDP; gloo on CPU, NCCL on CUDA).

    One training per codec file: ``<codec>.lock`` is held throughout. A codec file that exists is continued
    (``resume``, with the recorded settings only) or replaced (``force``), never overwritten unasked."""
    return CodecTrainer(recipe, resume, progress, force).run()


class CodecTrainer(Trainer):
    """A codec's training on the shared lifecycle: ``build`` (codec, optimizers, discriminator), ``start_fresh``
    (codebooks from audio) or the restored segment pool, ``run_epoch`` (the steps up to the next checkpoint),
    ``end_epoch`` (the checkpoint, then the codec file exported from it)."""

    def __init__(self, recipe: Recipe, resume: bool = False, progress: bool = True, force: bool = False) -> None:
        super().__init__(recipe, resume, progress, force)
        self.cfg, self.out = recipe.codec_train, output_path(recipe)
        self.checkpoint_root, self.legacy = checkpoint_root(self.out), legacy_state_path(self.out)
        self.lock_dir, self.lock_name = self.out.parent, f"{self.out.name}.lock"
        self.lock_busy = f"{self.out} is being trained by another process"
        self.log_place, self.logger_names = LogPlace(self.out.parent, f"{self.out.stem}."), self.cfg.loggers
        self.bar_label, self.total_steps = "codec", self.cfg.steps
        # train = "decoder": the trained codec it starts from, checked before any file is looked at
        self.decoder_from = self.decoder_source() if self.decoder_only else None

    def resume_point(self) -> Path | None:
        # it holds the lock: every temp file of these is a killed writer's (checkpoint.save clears its own)
        for path in (self.out, self.legacy, metrics_path(self.out)):
            remove_stale_temps(path)
        return super().resume_point()

    def find_checkpoint(self) -> Path | None:
        found = super().find_checkpoint()
        return found if found is not None or not self.legacy.is_file() else self.legacy

    def has_output(self, last: Path | None) -> bool:
        return self.out.is_file() or last is not None

    def refusal(self, last: Path | None) -> PianogenError:
        done = trained_steps(self.out)
        what = f"a codec trained for {done} steps" if done is not None else "a codec"
        return PianogenError(f"{self.out} already holds {what}: --resume continues its training, --force replaces "
                             f"it (runs tokenized with it would then need it again)")

    def check_settings(self, last: Path) -> None:
        if last == self.legacy:
            saved = pianogen.load_tensors(last, "a codec trainer state")
            recorded = json.loads(saved["settings"]) if "settings" in saved else None
        else:
            recorded = checkpoint.load_meta(last).get("settings")
        if recorded is None:  # states saved before settings were kept
            return
        given = codec_settings(self.recipe)
        # a data source's key recorded by a version whose [data] listed every source's keys: not this source's
        recorded = {k: v for k, v in recorded.items() if k in given or not k.startswith("data.")}
        check_unchanged(recorded, given, "the codec's recorded training", "resume with the recorded settings, or "
                        "train a new codec (codec.checkpoint) or --force")

    def build(self) -> None:
        """The codec, its optimizer, and the discriminator if asked for; the generators training draws from."""
        recipe, cfg, device = self.recipe, self.cfg, self.device
        if cfg.batch_size % self.ddp.world:
            raise PianogenError(f"codec_train.batch_size = {cfg.batch_size} does not split over "
                                f"{self.ddp.world} processes")
        torch.manual_seed(recipe.run.seed)
        # "steps" picks the level count and is shared by all ranks (every rank must run the same codebooks);
        # "segments" draws this rank's audio
        self.python_rngs = {"steps": random.Random(recipe.run.seed),
                            "segments": random.Random(recipe.run.seed + 1000 * self.ddp.rank)}
        options: dict[str, Any] = {k: v for k, v in recipe.codec.options.items() if k != "checkpoint"}
        if self.decoder_from is not None:  # its encoder and codebooks are kept, its decoder trained
            options["checkpoint"] = str(self.decoder_from)
        self.codec = self.model = pianogen.get_codec(recipe.codec.name, **options).to(device)
        if not isinstance(self.codec, TrainableCodec):
            raise PianogenError(f"codec '{recipe.codec.name}' cannot be trained (it is not a TrainableCodec)")
        if self.decoder_only:
            self.codec.freeze_tokens()
        self.codec.train()
        trained = [p for p in self.codec.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(trained, lr=cfg.lr, betas=(0.5, 0.9))
        self.register_state("opt", self.opt)
        self.lr_factor = lr_factor(cfg.schedule, cfg.warmup, cfg.steps)
        self.disc = self.disc_opt = None
        if cfg.discriminator:
            from encodec.msstftd import MultiScaleSTFTDiscriminator

            self.disc = MultiScaleSTFTDiscriminator(filters=32).to(device).train()
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
            self.register_state("disc", self.disc, required=False)  # a state from before the discriminator
            self.register_state("disc_opt", self.disc_opt, required=False)

    @property
    def decoder_only(self) -> bool:
        return self.cfg.train == "decoder"

    def decoder_source(self) -> Path:
        """The trained codec whose decoder ``train = "decoder"`` trains again: the [codec] checkpoint, which must
        exist and is never the file written (``out``), since runs tokenized with it may still decode with it."""
        given = self.recipe.codec.options.get("checkpoint")
        source = expand(given) if given else None
        if source is None or not source.is_file():
            raise PianogenError(f"codec_train.train = \"decoder\" trains the decoder of a trained codec: "
                                f"codec.checkpoint must name one ({given or 'unset'})")
        if source.resolve() == self.out.resolve():
            raise PianogenError(f"codec_train.train = \"decoder\" writes a new codec file: set codec_train.out "
                                f"to another path than codec.checkpoint ({source})")
        return source

    def start_fresh(self) -> None:
        self.sampler = self._segments(None)
        if self.decoder_only:  # the codebooks are the trained codec's
            return
        # TrainableCodec.init_codebooks: so even steps = 0 gives usable codes
        self.codec.init_codebooks(self.sampler.batch(self.cfg.batch_size // self.ddp.world).to(self.device))

    def restore(self, path: Path) -> None:
        if path != self.legacy:
            super().restore(path)
        else:  # pianogen 0.1's one file: the weights inside it (or, older still, only in the codec file)
            saved = pianogen.load_tensors(path, "a codec trainer state")
            weights = saved.pop("codec", None)
            self.codec.load_state_dict(weights if weights is not None else load_file(self.out))
            self.restore_state(saved)
        if self.ddp.main:  # the codec file catches up with the checkpoint (a kill may have come between them)
            self.export("last")

    def restore_rng(self, saved: dict[str, Any]) -> None:
        """Exact with the same world size; a state of an older version, or another world size, reseeds."""
        rng = _saved_rng(saved)
        if "python" in rng and self.ddp.world == 1:
            restore_rng(rng, self.python_rngs)
            return
        torch.set_rng_state(rng["torch"])
        for generator in self.python_rngs.values():
            generator.seed(self.recipe.run.seed + 1000 * self.ddp.rank + self.state.step)

    def load_extra(self, saved: dict[str, Any]) -> None:
        """The segment pool as it was (with the same world size: the same draws as if never stopped)."""
        exact = "python" in _saved_rng(saved) and self.ddp.world == 1
        pooled = saved["pool"]  # pianogen 0.1 kept one corpus's pool as a list
        self.sampler = self._segments((pooled if isinstance(pooled, dict) else {"": pooled},
                                       saved.get("rotation_periods")) if exact else None)

    def extra_state(self) -> dict[str, Any]:
        return {"seed": self.recipe.run.seed, "pool": self.sampler.pool_paths,
                "rotation_periods": self.sampler.rotation_periods}

    def meta(self) -> dict[str, Any]:
        return {"step": self.state.step, "codec_name": self.recipe.codec.name, "codec_file": str(self.out),
                "settings": codec_settings(self.recipe)}

    def export(self, tag: str) -> None:
        """The codec file from the checkpoint just written; pianogen 0.1's state file is then superseded."""
        self.codec.save(self.out)
        self.legacy.unlink(missing_ok=True)

    def wrap(self) -> None:
        # drawn with their own generator, so measuring never changes what training sees
        self.health_batch = self.sampler.batch(HEALTH_SEGMENTS, random.Random(self.recipe.run.seed + 1))
        self.wrapped, self.disc_wrapped = self.codec, self.disc
        if self.ddp.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # codebooks stay in sync through their all-reduced statistics (rvq.py), not by broadcasting buffers
            self.wrapped = DDP(self.codec, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                self.disc_wrapped = DDP(self.disc, device_ids=ids)
        self.clock = time.perf_counter()

    def _segments(self, saved: tuple[dict[str, list[str]], Any] | None) -> SegmentSampler:
        """The segment sampler: with a saved (pool, rotation periods), as it was; else new."""
        length = round(self.cfg.segment_seconds * self.codec.sample_rate)
        groups, shares = _train_groups(self.recipe)
        return SegmentSampler(groups, shares, self.codec.sample_rate, length, self.python_rngs["segments"],
                              *(saved or (None, None)))

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
        draw = self.python_rngs["steps"]
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
        if cfg.grad_clip:  # the sine-bank decoder's exp amplitudes spike at lr 1e-3 without it
            torch.nn.utils.clip_grad_norm_(self.codec.parameters(), cfg.grad_clip)
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
        self.log(row)
        used = " ".join(f"{h['used_fraction']:.0%}" for h in health)
        self.bar.update(self.state.step, f"loss {row['loss']:.3f} mel {row['mel']:.3f} codes used {used}")
        self.clock = time.perf_counter()

    def end_epoch(self) -> None:
        self.save("last")
        self.bar.update(self.state.step)

    def close(self) -> Path:
        """After the last checkpoint: ranks agree, code usage is checked."""
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
