"""Our token model's decoding against the plain eager decoder (benchmarks/plain_decoder.py), per precision,
in CPU seconds of one thread: on a machine shared with other jobs, wall time measures their load too.

    nice -n 15 python benchmarks/decode_ratio.py [--frames 150] [--prompt-frames 250] [--repeats 7]
    python benchmarks/decode_ratio.py --wall --threads 2   # on an idle machine: frames/s as a user sees them

The novel recipe's model at random initialisation against the plain decoder of its size, batch 1,
top-k 250, interleaved repeats (``pianogen.bench.decode_vs_plain``); prints one line per precision.
"""

import argparse
import time

import torch

import pianogen
from pianogen.bench import decode_vs_plain, token_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--frames", type=int, default=150)
parser.add_argument("--prompt-frames", type=int, default=250)
parser.add_argument("--repeats", type=int, default=7)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--wall", action="store_true", help="wall clock instead of CPU time (only on an idle machine)")
args = parser.parse_args()
torch.set_num_threads(args.threads)
clock, clock_name = (time.perf_counter, "wall clock") if args.wall else (time.process_time, "CPU time")
codec = pianogen.get_codec("soundstream")
model = token_model("novel", codec.codebook_size, torch.device("cpu"))
result = decode_vs_plain(model, args.prompt_frames, args.frames, codec.frame_rate, torch.device("cpu"),
                         repeats=args.repeats, clock=clock)
for precision, r in result["by_precision"].items():
    ratios = sorted(a / b for a, b in zip(r["runs"]["ours"], r["runs"]["plain"]))
    ours, plain = sorted(r["runs"]["ours"]), sorted(r["runs"]["plain"])
    # a shared host's load moves frames/s by +-20 % within minutes; the ratio of interleaved pairs does not
    print(f"{precision}: ours {r['frames_per_s']:.1f} (range {ours[0]:.1f}-{ours[-1]:.1f}) vs plain "
          f"{r['plain_frames_per_s']:.1f} ({plain[0]:.1f}-{plain[-1]:.1f}) frames/s ({clock_name}, "
          f"{args.threads} thread(s)), ratio median {r['ratio']:.3f} "
          f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}, {args.repeats} pairs)")
