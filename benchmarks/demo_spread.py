"""How much the demo's numbers move from run to run: the whole demo chain once per seed, side by side.

    python benchmarks/demo_spread.py [--seeds 0 1 2] [--home DIR] [--no-record]

For each seed S, from an empty cache (``--home``, default runs/demo_spread): the demo codec is trained
by ``pianogen codec train codec_demo run.seed=S`` into its own checkpoint, the demo token model by
``pianogen train demo run.seed=S`` on that codec, and ``pianogen eval`` scores the test split. Seed 0
runs what ``make demo`` runs (its thread count may change the last digits). Printed and appended to
RESULTS.md: per seed the codec file's sha256 and its Mel L1 at 1 and 8 levels on the test split, the
test NLL per level beside the unigram floor, bits/s; then mean and range. Nothing here is timed.
A codec or run already in ``--home`` (from an earlier call) is reused, and only scored again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parent.parent


def pianogen(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "pianogen", *args], check=True, env=env, cwd=ROOT)


def one_seed(seed: int, home: Path) -> dict:
    env = os.environ | {"PIANOGEN_HOME": str(home)}
    codec = home / "codecs" / f"codec_demo-s{seed}.safetensors"
    run = home / "runs" / f"demo-s{seed}"
    if not codec.is_file():
        pianogen("codec", "train", "codec_demo", f"run.seed={seed}", f"codec.checkpoint={codec}", env=env)
    if not (run / "checkpoints" / "last").exists():
        pianogen("train", "demo", f"run.seed={seed}", f"codec.checkpoint={codec}", "codec.train_recipe=",
                 f"run.dir={run}", env=env)
    pianogen("eval", str(run), "--prompts", "1", "--seconds", "2", "--out", str(run / "eval"), env=env)
    r = json.loads((run / "eval" / "eval.json").read_text())
    by = r["codec"]["by_levels"]
    return {"seed": seed, "codec_hash": json.loads((run / "codec.json").read_text())["sha256"][:16],
            "mel_1": by["1"]["mel_l1"], "mel_8": by[str(max(int(k) for k in by if k.isdigit()))]["mel_l1"],
            "nll": r["nll_per_level"], "unigram": r["unigram_nll_per_level"], "repeat": r["repeat_nll_per_level"],
            "bits_per_second": r["bits_per_second"], "unigram_bits_per_second": r["unigram_bits_per_second"]}


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.fmean(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def table(rows: list[dict]) -> str:
    levels = len(rows[0]["nll"])
    head = ["seed", "codec sha256", "Mel L1 1 / 8 lvl"] + [f"NLL L{k + 1} (unigram)" for k in range(levels)] \
        + ["bits/s (unigram)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([str(r["seed"]), f"`{r['codec_hash']}`", f"{r['mel_1']:.3f} / {r['mel_8']:.3f}"]
                     + [f"{r['nll'][k]:.3f} ({r['unigram'][k]:.3f})" for k in range(levels)]
                     + [f"{r['bits_per_second']:.0f} ({r['unigram_bits_per_second']:.0f})"]) + " |")
    if len(rows) > 1:
        lines.append("| " + " | ".join(["mean [range]", "", f"{spread([r['mel_1'] for r in rows])} / "
                                        f"{spread([r['mel_8'] for r in rows])}"]
                     + [f"{spread([r['nll'][k] for r in rows])} ({spread([r['unigram'][k] for r in rows])})"
                        for k in range(levels)]
                     + [f"{spread([r['bits_per_second'] for r in rows], 0)} "
                        f"({spread([r['unigram_bits_per_second'] for r in rows], 0)})"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--home", type=Path, default=ROOT / "runs" / "demo_spread")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = [one_seed(seed, args.home.resolve()) for seed in args.seeds]
    text = table(rows)
    print(json.dumps(rows, indent=2))
    print(text)
    if args.no_record:
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip() or "?"
    with RESULTS.open("a") as f:
        f.write(f"\n## Demo run to run (`python benchmarks/demo_spread.py`, {datetime.date.today()}, "
                f"commit {commit})\n\n"
                "Each seed: codec_demo and the demo model trained from an empty cache, test split scored by "
                "`pianogen eval`; NLL in nats/token.\n\n" + text)


if __name__ == "__main__":
    main()
