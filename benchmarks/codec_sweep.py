"""Train variants of a codec recipe one after another and score each the way codec_quality.py does.

    python benchmarks/codec_sweep.py --recipe codec_demo --out DIR [--budget 420] \
        "p05_500=codec_train.steps=500 codec_train.quantizer_dropout=0.5" "base=" ...

Each variant is ``name=overrides`` (space-separated recipe overrides; empty for the recipe as it is).
It trains with ``pianogen codec train`` into DIR/name.safetensors and is scored by
``benchmarks/codec_quality.py --no-record`` on unseen audio (the recipe's corpus of data.seed=1).
DIR/sweep.json is rewritten after each variant, so a run cut off by its time limit keeps what it
measured; a variant that would start after --budget seconds is skipped. Built to use a short GPU lease
for a hyperparameter search whose winner is then confirmed by the real recipe on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--recipe", default="codec_demo")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no variant starts")
parser.add_argument("variants", nargs="+", help="name=overrides")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
started, rows = time.monotonic(), []
for spec in args.variants:
    name, _, overrides = spec.partition("=")
    if time.monotonic() - started > args.budget:
        rows.append({"name": name, "overrides": overrides, "skipped": "past --budget"})
        continue
    checkpoint = args.out / f"{name}.safetensors"
    t0 = time.monotonic()
    train = subprocess.run([sys.executable, "-m", "pianogen", "codec", "train", args.recipe, *overrides.split(),
                            f"codec.checkpoint={checkpoint}"], capture_output=True, text=True)
    row = {"name": name, "overrides": overrides, "train_s": round(time.monotonic() - t0, 1)}
    if train.returncode:
        row["error"] = (train.stdout + train.stderr)[-2000:]
    else:
        score = subprocess.run([sys.executable, str(Path(__file__).with_name("codec_quality.py")), str(checkpoint),
                                "--recipe", args.recipe, "--no-record"], capture_output=True, text=True)
        text = score.stdout
        if score.returncode or "{" not in text:
            row["error"] = (text + score.stderr)[-2000:]
        else:
            report = json.loads(text[text.index("{"):])
            by = report["by_levels"]
            row.update({"mel_l1": {k: round(v["mel_l1"], 4) for k, v in by.items()},
                        "drop_1_8": round(1 - by["8"]["mel_l1"] / by["1"]["mel_l1"], 4),
                        "floor": (report.get("autoencoder") or {}).get("unquantized_mel_l1"),
                        "min_used": min(h["used_fraction"] for h in report["codebooks"]),
                        "checks": report.get("checks")})
    rows.append(row)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(row), flush=True)
print(f"{'variant':<14} {'train s':>8} {'1 lvl':>7} {'8 lvl':>7} {'floor':>7} {'drop':>6} {'min used':>8}")
for r in rows:
    if "mel_l1" in r:
        print(f"{r['name']:<14} {r['train_s']:>8} {r['mel_l1']['1']:>7.3f} {r['mel_l1']['8']:>7.3f} "
              f"{r['floor'] or float('nan'):>7.3f} {r['drop_1_8']:>6.1%} {r['min_used']:>8.0%}")
    else:
        print(f"{r['name']:<14} {r.get('skipped') or 'error'}")
