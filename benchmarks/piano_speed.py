"""Fast enough to play with, measured (issue #28 item 4): a trained run's `generate` at batch 1 on 2 threads, int8
and fp32, beside the plain eager decoder in the same run, and the first audio of `--stream` after a 5 s prompt.

    python benchmarks/piano_speed.py RUN [--out DIR] [--threads 2] [--prompt-seconds 5] [--seconds 8] [--repeats 3]
                                         [--prompt FILE]

RUN: a trained run's folder or a built-in run's name (piano). The measurements are pianogen.bench.run_speed's
(wall clock: run it on an otherwise idle machine, or the load is in the numbers). Prints one line per precision
with the pass/fail of ">= 2x real time" and "first audio < 1 s"; writes OUT/piano_speed.json. The prompt is composed
piano (busy playing) unless ``--prompt`` names a recording (e.g. a lone Salamander note, whose continuation is
cooled and faded: the fade holds back its first 64 ms).
"""

import argparse
import datetime
import json
import subprocess
from pathlib import Path

from pianogen.bench.run_speed import run_speed, speed_lines
from pianogen.generation.takes import read_recording
from pianogen.paths import atomic_write_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", metavar="RUN", help="a trained run's folder or a built-in run's name")
    parser.add_argument("--out", type=Path, default=Path("piano_speed"), help="where piano_speed.json goes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=8.0, help="continuation generated per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--precisions", default="int8,fp32", help="comma-separated: fp32, bf16, int8")
    parser.add_argument("--plain-frames", type=int, default=150, help="frames per plain-decoder comparison")
    parser.add_argument("--prompt", type=Path, default=None, help="a recording to continue (its last seconds)")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1 or args.seconds <= 0 or args.prompt_seconds <= 0:
        raise SystemExit("error: --threads and --repeats must be >= 1, --seconds and --prompt-seconds > 0")
    result = run_speed(args.run, tuple(p for p in args.precisions.split(",") if p), args.threads, args.prompt_seconds,
                       args.seconds, args.repeats, plain_frames=args.plain_frames,
                       prompt=read_recording(args.prompt) if args.prompt else None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip() or None
    result.update(commit=commit, date=datetime.date.today().isoformat())
    for line in speed_lines(result):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "piano_speed.json", json.dumps(result, indent=2).encode())
    print(args.out / "piano_speed.json")


if __name__ == "__main__":
    main()
