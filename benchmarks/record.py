"""Run ``pianogen bench`` and append its row to benchmarks/RESULTS.md (date, commit, device).

    python benchmarks/record.py [--device cpu|cuda] [pianogen bench options...]
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
COLUMNS = ("train_tokens_per_s", "mfu", "generate_frames_per_s", "generate_no_cache_frames_per_s",
           "generate_realtime_factor", "codec_encode_realtime_factor", "codec_decode_realtime_factor",
           "tokenize_realtime_factor")


def cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def main() -> None:
    done = subprocess.run([sys.executable, "-m", "pianogen", "bench", "--json", *sys.argv[1:]],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr.strip() or f"pianogen bench exited {done.returncode}")
    result = json.loads(done.stdout)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "?"
    cache_8 = next((g for g in result["details"]["generate_novel"] if g["batch"] == 8), None)
    row = [datetime.date.today().isoformat(), commit, f"{result['device']} ({result['details']['threads']} threads)",
           *(cell(result[c]) for c in COLUMNS), cell(result["details"]["generate_novel_bf16"]["realtime_factor"]),
           cell(cache_8["realtime_factor"] * 8 if cache_8 else None)]
    with RESULTS.open("a") as f:
        f.write("| " + " | ".join(row) + " |\n")
    (RESULTS.parent / "last_bench.json").write_text(json.dumps(result, indent=2))
    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
