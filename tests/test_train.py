"""The trainer on a tiny recipe: learning, files, exact resume, NaN guard, DDP equivalence."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import pianogen
from pianogen import registry
from pianogen.errors import PianogenError
from pianogen.interfaces import Loss
from pianogen.training.train import train
from tests.conftest import tiny_recipe


def records(run_dir, split):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_training_learns_and_leaves_its_files(trained_run):
    val = records(trained_run, "validation")
    assert len(val) == 2 and val[1]["loss"] < val[0]["loss"]
    first_train = records(trained_run, "train")[0]
    assert {"epoch", "step", "loss", "nll_l1", "nll_l2", "lr", "tokens_per_s"} <= set(first_train)
    import math

    assert val[-1]["nll"] < math.log(64)  # better than a uniform guess over 64 codes
    for tag in ("last", "best"):
        assert (trained_run / "checkpoints" / tag / "model.safetensors").is_file()
        assert (trained_run / "checkpoints" / tag / "trainer_state.pt").is_file()
    assert (trained_run / "loss.png").stat().st_size > 1000
    frozen = pianogen.load_recipe(trained_run / "recipe.toml")
    assert frozen.model.options["d_model"] == 32


def test_resume_continues_the_same_trajectory(tmp_path, tiny_codec_path, tiny_corpus):
    settings = {"train": {"save_every": 3, "log_every": 1}, "model": {"dropout": 0.1}}
    straight = train(pianogen.load_recipe(tiny_recipe(tmp_path / "a", tiny_codec_path, tiny_corpus, **settings)),
                     progress=False)
    recipe = pianogen.load_recipe(tiny_recipe(tmp_path / "b", tiny_codec_path, tiny_corpus, **settings))

    def kill(step):
        if step == 8:  # 2 steps after the checkpoint at step 6 are lost, as in a real kill
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=kill)
    with pytest.raises(PianogenError, match="already has checkpoints"):
        train(recipe, progress=False)
    resumed = train(recipe, resume=True, progress=False)
    a = load_file(straight / "checkpoints/last/model.safetensors")
    b = load_file(resumed / "checkpoints/last/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    losses = lambda run: [(r["step"], round(r["loss"], 5)) for r in records(run, "train")]  # noqa: E731
    assert losses(resumed) == losses(straight)


def kill_at(*steps):
    """on_step hooks that raise at the given step, one per call of train, as a real kill would."""
    pending = list(steps)

    def hook(step):
        if pending and step == pending[0]:
            pending.pop(0)
            raise KeyboardInterrupt

    return hook


def test_resume_is_exact_with_accumulation_onecycle_mel_and_dropout(tmp_path, tiny_codec_path, tiny_corpus):
    """11 micro-batches per epoch with grad_accum 2: 5 steps and one leftover micro-batch per epoch.
    Killed at step 7 (resumes from the epoch-end checkpoint at 5) and at step 10 (resumes mid-epoch
    from step 8, inside a logging window): weights and every logged average equal the straight run's."""
    settings = {"train": {"epochs": 3, "grad_accum": 2, "schedule": "onecycle", "save_every": 4, "log_every": 3},
                "model": {"dropout": 0.1},
                "loss": [{"name": "nll"}, {"name": "mel", "weight": 0.5, "reconstruction": "decoder",
                                           "crop_frames": 16}]}
    straight = train(pianogen.load_recipe(tiny_recipe(tmp_path / "a", tiny_codec_path, tiny_corpus, **settings)),
                     progress=False)
    recipe = pianogen.load_recipe(tiny_recipe(tmp_path / "b", tiny_codec_path, tiny_corpus, **settings))
    hook = kill_at(7, 10)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=hook)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, resume=True, progress=False, on_step=hook)
    resumed = train(recipe, resume=True, progress=False)
    a = load_file(straight / "checkpoints/last/model.safetensors")
    b = load_file(resumed / "checkpoints/last/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)
    logged = lambda run: [{k: v for k, v in r.items() if k != "tokens_per_s"}  # noqa: E731
                          for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert [r["step"] for r in logged(straight) if r["split"] == "train"] == [3, 6, 9, 12, 15]
    assert logged(resumed) == logged(straight)


class NanAfter(Loss):
    """NLL that turns into NaN on its 5th call: a run that diverges."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, logits, targets, mask=None):
        self.calls += 1
        value = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
        return (value * float("nan") if self.calls >= 5 else value), {}


class NanPlugin:
    @staticmethod
    @pianogen.hookimpl
    def register_losses(register):
        register("nan_after", NanAfter)


def test_nan_loss_stops_with_a_clear_error_keeping_the_checkpoint(tmp_path, tiny_codec_path, tiny_corpus,
                                                                  fresh_registry):
    registry.register_module(NanPlugin, "nan-plugin")
    path = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, loss=[{"name": "nan_after"}],
                       train={"save_every": 2, "log_every": 1})
    with pytest.raises(PianogenError, match=r"loss became nan at step 4 .*last good checkpoint"):
        train(pianogen.load_recipe(path), progress=False)
    kept = json.loads((tmp_path / "run/checkpoints/last/meta.json").read_text())
    assert kept["step"] == 4 - 4 % 2


def test_ddp_two_processes_match_one(tmp_path, tiny_codec_path, tiny_corpus):
    settings = {"train": {"epochs": 1, "max_steps": 6, "batch_size": 8}, "data": {"num_workers": 0}}
    one = tiny_recipe(tmp_path / "one", tiny_codec_path, tiny_corpus, **settings)
    two = tiny_recipe(tmp_path / "two", tiny_codec_path, tiny_corpus, **settings)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pianogen", "train", str(one)], check=True, env=env,
                   capture_output=True)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "pianogen", "train", str(two)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    a = load_file(tmp_path / "one/run/checkpoints/last/model.safetensors")
    b = load_file(tmp_path / "two/run/checkpoints/last/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), "DDP result differs from one process"
    va, vb = records(tmp_path / "one/run", "validation")[-1], records(tmp_path / "two/run", "validation")[-1]
    assert va["loss"] == pytest.approx(vb["loss"], rel=1e-4)


@pytest.mark.parametrize("model, levels", [("baseline", 1), ("delay", 3)])
def test_the_other_models_train_and_continue_a_prompt(tmp_path, tiny_codec_path, tiny_corpus, model, levels):
    from pianogen.generation.generate import GenerationRequest, generate

    recipe = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, codec={"levels": levels}, model={"name": model})
    run = train(pianogen.load_recipe(recipe), progress=False)
    val = records(run, "validation")
    assert val[-1]["loss"] < val[0]["loss"] and f"nll_l{levels}" in val[-1]
    report = generate(run, GenerationRequest(prompt="test:0", seconds=0.3, out=tmp_path / "g", prompt_seconds=0.2),
                      device="cpu", progress=False)
    assert report["frames"] == 60 and (tmp_path / "g" / "continuation_0.wav").is_file()


def test_onecycle_keeps_the_recipes_beta1(tmp_path, tiny_codec_path, tiny_corpus):
    """OneCycleLR cycles the learning rate only: AdamW's beta1 stays the recipe's at every step."""
    recipe = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus,
                         train={"epochs": 1, "schedule": "onecycle", "betas": [0.8, 0.99], "save_every": 1})
    seen = []

    def beta1(step):
        state = torch.load(tmp_path / "run/checkpoints/last/trainer_state.pt", weights_only=True)
        seen.append({g["betas"][0] for g in state["optimizer"]["param_groups"]})

    train(pianogen.load_recipe(recipe), progress=False, on_step=beta1)
    assert len(seen) == 11 and all(s == {0.8} for s in seen), seen


def _backend_of_a_cpu_run(rank: int, port: int, backends) -> None:
    import torch.distributed as dist

    from pianogen.training.train import init_distributed

    torch.cuda.is_available = lambda: True  # a CUDA machine, but the recipe says run.device = "cpu"
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    ddp = init_distributed(torch.device("cpu"))
    backends[rank] = dist.get_backend()
    assert float(ddp.all_sum(torch.ones(1))) == 2.0  # CPU tensors reduce: NCCL would refuse them
    dist.destroy_process_group()


def test_ddp_on_cpu_uses_gloo_even_where_cuda_exists():
    import torch.multiprocessing as mp

    backends = mp.Manager().dict()
    mp.spawn(_backend_of_a_cpu_run, args=(29533, backends), nprocs=2, join=True)
    assert dict(backends) == {0: "gloo", 1: "gloo"}


class ValidationSeen(Loss):
    """NLL that keeps the validation windows its ``prepare`` was handed (None when it got none)."""

    seen: list[torch.Tensor] | None = None

    def prepare(self, ctx):
        ValidationSeen.seen = None if ctx.validation_codes is None else list(ctx.validation_codes())

    def forward(self, logits, targets, mask=None):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten()), {}


class ValidationSeenPlugin:
    @staticmethod
    @pianogen.hookimpl
    def register_losses(register):
        register("validation_seen", ValidationSeen)


def test_losses_are_prepared_with_the_validation_windows(tmp_path, tiny_codec_path, tiny_corpus, fresh_registry):
    """What the mel loss measures its linear stand-in on: the validation split's windows, not training ones."""
    from pianogen import pipeline
    from pianogen.data.windows import WindowDataset

    registry.register_module(ValidationSeenPlugin, "validation-seen")
    recipe = pianogen.load_recipe(tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus,
                                              loss=[{"name": "validation_seen"}],
                                              train={"epochs": 1, "max_steps": 1}))
    train(recipe, progress=False)
    cache = pipeline.build_token_cache(recipe, pipeline.build_codec(recipe), progress=False)
    split = lambda name: WindowDataset(cache, name, 4, recipe.data.window, overlap=0.0)  # noqa: E731
    validation, training = split("validation"), split("train")
    assert ValidationSeen.seen is not None, "the trainer passed no validation_codes"
    seen = torch.cat(ValidationSeen.seen)
    assert torch.equal(seen, torch.stack([validation[i]["codes"] for i in range(len(validation))]))
    assert not any(torch.equal(seen[0], training[i]["codes"]) for i in range(len(training)))


def test_a_checkpoint_of_the_0_1_layout_resumes_exactly(tmp_path, tiny_codec_path, tiny_corpus):
    """Checkpoints of pianogen 0.1 kept the loop counters in meta.json only and the RNG as torch's state."""
    settings = {"train": {"save_every": 3, "log_every": 2}, "model": {"dropout": 0.1}}
    straight = train(pianogen.load_recipe(tiny_recipe(tmp_path / "a", tiny_codec_path, tiny_corpus, **settings)),
                     progress=False)
    recipe = pianogen.load_recipe(tiny_recipe(tmp_path / "b", tiny_codec_path, tiny_corpus, **settings))
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=kill_at(8))
    state_file = recipe.run_dir() / "checkpoints/last/trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    torch.save({"optimizer": state["optimizer"], "scheduler": state["scheduler"],
                "rng": {"torch": state["rng"]["torch"]}, "log_window": state["log_window"]}, state_file)
    resumed = train(recipe, resume=True, progress=False)
    a = load_file(straight / "checkpoints/last/model.safetensors")
    b = load_file(resumed / "checkpoints/last/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert records(resumed, "train") != [] and \
        [r["loss"] for r in records(resumed, "train")] == [r["loss"] for r in records(straight, "train")]


def test_a_moved_run_resumes_where_it_now_is(tmp_path, tiny_codec_path, tiny_corpus):
    """The saved recipe.toml records the old absolute run.dir; `train MOVED/recipe.toml --resume` resumes
    in MOVED and finishes exactly as an unbroken run, and writes nothing at the old place."""
    from click.testing import CliRunner

    from pianogen.commands.cli import cli

    settings = {"train": {"save_every": 3, "log_every": 1}}
    straight = train(pianogen.load_recipe(tiny_recipe(tmp_path / "a", tiny_codec_path, tiny_corpus, **settings)),
                     progress=False)
    recipe = pianogen.load_recipe(tiny_recipe(tmp_path / "b", tiny_codec_path, tiny_corpus, **settings))
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=kill_at(8))
    old = recipe.run_dir().resolve()
    moved = tmp_path / "moved"
    old.rename(moved)
    result = CliRunner().invoke(cli, ["train", str(moved / "recipe.toml"), "--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming the run where the file is" in result.output and not old.exists()
    a = load_file(straight / "checkpoints/last/model.safetensors")
    b = load_file(moved / "checkpoints/last/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_patience_stops_when_validation_stops_improving(tmp_path, tiny_codec_path, tiny_corpus):
    # lr 1e-30 (below the weights' float32 resolution): every epoch's validation loss equals the first one's,
    # so none is better and a patience of 2 ends the 6 planned epochs after the third; best stays epoch 1's
    settings = {"train": {"epochs": 6, "lr": 1e-30, "schedule": "constant", "patience": 2}}
    run = train(pianogen.load_recipe(tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, **settings)), progress=False)
    val = records(run, "validation")
    assert len(val) == 3 and val[0]["loss"] == val[2]["loss"]
    best = json.loads((run / "checkpoints/best/meta.json").read_text())
    last = json.loads((run / "checkpoints/last/meta.json").read_text())
    assert (best["epoch"], last["epoch"]) == (1, 3)
