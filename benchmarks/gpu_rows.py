"""The GPU measurements of issue 16 item 5 (and the CUDA paths of issue 10 item 5) in one run, sized for a
lent device's short lease.

    python benchmarks/gpu_rows.py --out DIR [--budget 360] [--device cuda] [--quick]

Novel training steps/s and MFU in bf16, eager and compiled; generation frames/s at batch 1 and 8, eager and
with CUDA graphs (``generate(compile=True)``), fp32 and bf16; our decoder against the plain eager decoder;
codec encode/decode x real time beside the reference package's model; codec-training steps/s through the
real trainer in fp32 and bf16 autocast. Each measurement stands alone: a failure is kept with its
traceback and the others go on, and ``DIR/gpu_rows.json`` is rewritten after each one, so a run cut off at
its time limit keeps what it measured. Measurements that would start after ``--budget`` seconds are
skipped. ``--quick`` shrinks every size, to check the script itself on a CPU. Prints a table last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import pianogen
from pianogen.bench import (
    codec_speed,
    codec_training_speed,
    codec_vs_reference,
    decode_vs_plain,
    generation_speed,
    peak_flops,
    token_model,
    training_speed,
    untrained_codec,
)
from pianogen.generation.precision import in_precision
from pianogen.generation.sampling import make_sampler

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--budget", type=float, default=360.0, help="seconds after which no measurement starts")
parser.add_argument("--device", default="cuda")
parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
parser.add_argument("--only", default="", help="comma-separated measurement names (default: all)")
args = parser.parse_args()
device = torch.device(args.device)
args.out.mkdir(parents=True, exist_ok=True)
started = time.monotonic()
results: dict[str, Any] = {}
q = args.quick
FRAMES, PROMPT, TRAIN_STEPS = (8, 16, 1) if q else (1000, 250, 10)
CODEC_SECONDS, CODEC_BATCH, CODEC_STEPS = (1.0, 2, 1) if q else (10.0, 16, 3)

reference_codec = pianogen.get_codec("soundstream")
frame_rate = reference_codec.frame_rate


def novel() -> torch.nn.Module:
    return token_model("novel", reference_codec.codebook_size, device)


PLAN: dict[str, Callable[[], Any]] = {}


def measure(name: str, fn: Callable[[], Any]) -> None:
    PLAN[name] = fn


def run(name: str, fn: Callable[[], Any]) -> None:
    if time.monotonic() - started > args.budget:
        results[name] = {"skipped": "time budget spent"}
        return
    t0 = time.monotonic()
    print(f"[{t0 - started:6.1f} s] {name} ...", flush=True)
    try:
        results[name] = fn()
    except Exception:  # one broken path must not cost the lease's other numbers
        results[name] = {"error": traceback.format_exc()}
        print(results[name]["error"], flush=True)
    if isinstance(results[name], dict):
        results[name]["wall_s"] = round(time.monotonic() - t0, 1)
    (args.out / "gpu_rows.json").write_text(json.dumps(results, indent=1, default=str))
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train(compile: bool) -> dict[str, Any]:
    recipe = pianogen.load_recipe("novel")
    batch, seq = (2, 64) if q else (recipe.train.batch_size, recipe.data.window)
    return training_speed(novel(), batch, seq, TRAIN_STEPS, device, compile=compile)


def generate(batch: int, precision: str, compile: bool) -> dict[str, Any]:
    model = in_precision(novel().eval(), precision)
    t0 = time.monotonic()
    result = generation_speed(model, PROMPT, FRAMES, batch, frame_rate, device, compile=compile)
    result.update(precision=precision, compile=compile, with_compile_s=round(time.monotonic() - t0, 1))
    from torch._dynamo.utils import counters  # did inductor capture CUDA graphs, or skip them (and why)?

    result["cudagraph_counters"] = {k: v for k, v in counters["inductor"].items() if "cudagraph" in k}
    return result


def sdpa_new_shapes(n: int = 30) -> dict[str, Any]:
    """Milliseconds per call of bf16 single-query attention when every call has a key length not seen
    before (eager decoding's pattern), per SDPA backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    out: dict[str, Any] = {}
    q = torch.randn(1, 8, 1, 64, device=device, dtype=torch.bfloat16)
    for i, name in enumerate(("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")):
        lengths = range(300 + 100 * i, 300 + 100 * i + n)  # disjoint per backend: no plan cached by another
        keys = [torch.randn(1, 8, n_keys, 64, device=device, dtype=torch.bfloat16) for n_keys in lengths]
        try:
            with sdpa_kernel([getattr(SDPBackend, name)]):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for k in keys:
                    torch.nn.functional.scaled_dot_product_attention(q, k, k)
                torch.cuda.synchronize()
            out[name] = round((time.perf_counter() - t0) / n * 1e3, 3)
        except RuntimeError as err:
            out[name] = str(err).splitlines()[0][:120]
    return out


def graph_kernels(precision: str, top: int = 12) -> dict[str, Any]:
    """Where a CUDA-graph decoding step spends its time: the top kernels by device time over 100 frames
    of ``generate(compile="static")`` after a warm-up run (fp32's graphs ran no faster than eager)."""
    from torch.profiler import ProfilerActivity, profile

    model = in_precision(novel().eval(), precision)
    prompt = torch.randint(0, model.vocab_size, (1, model.n_levels, PROMPT), device=device)
    sample = make_sampler(1.0, top_k=250, seed=0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    frames = 8 if q else 100
    with torch.inference_mode():
        model.generate(prompt, frames, sample, compile="static")
        sync()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            model.generate(prompt, frames, sample, compile="static")
            sync()
        wall = time.perf_counter() - t0
    rows = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)
    kernels = [{"name": e.key[:90], "calls": e.count,
                "device_us_per_frame": round(e.self_device_time_total / frames, 1)} for e in rows[:top]]
    return {"precision": precision, "frames": frames, "wall_ms_per_frame_profiled": round(wall / frames * 1e3, 2),
            "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(), "kernels": kernels}


def sdpa_fp32_one_query(repeats: int = 50) -> dict[str, Any]:
    """Microseconds per call of fp32 single-query attention (8 heads x 64) per SDPA backend: over 1250 keys
    (eager decoding's sliced cache) and over 2048 under a mask (the CUDA-graph layout)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    out: dict[str, Any] = {}
    for n_keys, masked in ((1250, False), (2048, True)):
        q, k = torch.randn(1, 8, 1, 64, device=device), torch.randn(1, 8, n_keys, 64, device=device)
        mask = torch.arange(n_keys, device=device) < n_keys // 2 if masked else None
        for name in ("EFFICIENT_ATTENTION", "MATH"):
            with sdpa_kernel([getattr(SDPBackend, name)]):
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, k, attn_mask=mask)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(repeats):
                    torch.nn.functional.scaled_dot_product_attention(q, k, k, attn_mask=mask)
                torch.cuda.synchronize()
            key = f"{name}_{n_keys}{'_masked' if masked else ''}_us"
            out[key] = round((time.perf_counter() - t0) / repeats * 1e6, 1)
    return out


def nccl_two_ranks_one_gpu() -> dict[str, Any]:
    """Can two NCCL ranks share this one GPU (a DDP test without a second one)? NCCL refuses duplicate
    devices in one communicator; this records what it says."""
    script = (
        "import os, torch, torch.distributed as dist\n"
        "dist.init_process_group('nccl', device_id=torch.device('cuda', 0))\n"
        "x = torch.ones(4, device='cuda:0') * (dist.get_rank() + 1)\n"
        "dist.all_reduce(x)\n"
        "torch.cuda.synchronize()\n"
        "print('rank', dist.get_rank(), 'all_reduce', x.tolist(), flush=True)\n"
        "dist.destroy_process_group()\n")
    path = args.out / "nccl_two_ranks.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(path)],
                          capture_output=True, text=True, timeout=90, check=False)
    said = [line for line in done.stderr.splitlines() if "Error" in line or "NCCL" in line or "Duplicate" in line]
    return {"returncode": done.returncode, "stdout": done.stdout[-800:], "errors": said[:12]}


def cuda_tests() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda or gpu", "tests"],
                          capture_output=True, text=True, timeout=120, check=False)
    return {"returncode": done.returncode, "tail": done.stdout[-1500:] + done.stderr[-500:]}


results["env"] = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                  else "cpu", "peak_bf16_flops": peak_flops(device), "cuda": torch.version.cuda,
                  "threads": torch.get_num_threads()}
print(results["env"], flush=True)
measure("train_novel_bf16", lambda: train(compile=False))
measure("generate_b1_fp32", lambda: generate(1, "fp32", compile=False))
measure("generate_b1_fp32_graphs", lambda: generate(1, "fp32", compile=True))
measure("generate_b8_fp32", lambda: generate(8, "fp32", compile=False))
measure("generate_b8_fp32_graphs", lambda: generate(8, "fp32", compile=True))
measure("codec_demo", lambda: codec_speed(untrained_codec("codec_demo"), CODEC_SECONDS * 3, device))
measure("codec_reference", lambda: codec_speed(reference_codec, CODEC_SECONDS, device))
measure("codec_vs_reference_package", lambda: codec_vs_reference(reference_codec, CODEC_SECONDS, device))
measure("train_codec_reference_fp32", lambda: codec_training_speed(
    "codec", device.type, batch=CODEC_BATCH, segment_seconds=1.0, steps=CODEC_STEPS, precision="fp32"))
measure("train_codec_reference_bf16", lambda: codec_training_speed(
    "codec", device.type, batch=CODEC_BATCH, segment_seconds=1.0, steps=CODEC_STEPS, precision="bf16"))
measure("train_novel_bf16_compiled", lambda: train(compile=True))
measure("generate_b1_bf16", lambda: generate(1, "bf16", compile=False))
measure("generate_b1_bf16_graphs", lambda: generate(1, "bf16", compile=True))
measure("generate_b1_bf16_again", lambda: generate(1, "bf16", compile=False))  # the first eager bf16 run, again
measure("decode_vs_plain", lambda: decode_vs_plain(in_precision(novel().eval(), "fp32"), PROMPT, FRAMES,
                                                   frame_rate, device, precisions=("fp32", "bf16")))
measure("cuda_tests", cuda_tests)
measure("sdpa_new_shapes", sdpa_new_shapes)
measure("generate_b1_fp32_graphs_again", lambda: generate(1, "fp32", compile=True))
measure("graph_kernels_fp32", lambda: graph_kernels("fp32"))
measure("graph_kernels_bf16", lambda: graph_kernels("bf16"))
measure("nccl_two_ranks_one_gpu", nccl_two_ranks_one_gpu)
measure("sdpa_fp32_one_query", sdpa_fp32_one_query)
for name in (args.only.split(",") if args.only else PLAN):
    run(name, PLAN[name])

print("\n| measurement | result | wall s |\n|---|---|---|")
for name, r in results.items():
    if name == "env" or not isinstance(r, dict):
        continue
    if "error" in r or "skipped" in r:
        text = r.get("skipped") or r["error"].strip().splitlines()[-1][:150]
    elif name.startswith("train_novel"):
        text = f"{r['tokens_per_s']:.0f} tokens/s, {r['step_s'] * 1e3:.1f} ms/step" + (
            f", MFU {r['mfu']:.1%}" if r.get("mfu") else "")
    elif name.startswith("generate"):
        text = (f"{r['frames_per_s']:.1f} frames/s per stream ({r['realtime_factor']:.2f}x RT, x{r['batch']} "
                f"streams), no cache {r['no_cache_frames_per_s']:.1f}, incl. compile {r['with_compile_s']} s "
                f"{r['cudagraph_counters'] or ''}")
    elif name.startswith("train_codec"):
        text = f"{r['steps_per_s']:.2f} steps/s recon, {r['adversarial_steps_per_s']:.2f} with discriminator"
    elif name == "decode_vs_plain":
        text = "; ".join(f"{p} {v['frames_per_s']:.1f} vs {v['plain_frames_per_s']:.1f} ({v['ratio']:.2f}x)"
                         for p, v in r.get("by_precision", {}).items())
    elif name == "sdpa_fp32_one_query":
        text = ", ".join(f"{k} {v}" for k, v in r.items() if k != "wall_s")
    elif name == "sdpa_new_shapes":
        text = "ms per call at a new key length: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "wall_s")
    elif name.startswith("graph_kernels"):
        text = f"{r['wall_ms_per_frame_profiled']} ms/frame; " + "; ".join(
            f"{k['name'][:40]} {k['device_us_per_frame']} us" for k in r["kernels"][:4])
    elif name == "nccl_two_ranks_one_gpu":
        text = f"rc {r['returncode']}: " + (r["stdout"] + " ".join(r["errors"][:2])).strip()[:200]
    elif name == "cuda_tests":
        text = f"rc {r['returncode']}: " + r["tail"].strip().splitlines()[-1] if r["tail"].strip() else ""
    else:
        text = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k.endswith("realtime_factor"))
    print(f"| {name} | {text} | {r.get('wall_s', '')} |")
print(results["env"])
