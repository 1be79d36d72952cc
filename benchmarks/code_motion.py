"""Do a run's continuations move like the true ones? Level-1 code changes a second and the longest unchanged
stretch, for the true continuation and for sampling at each prompt-prior weight (a drone holds its codes).

    python benchmarks/code_motion.py RUN [--weights 0,1,2] [--split validation] [--prompts 12]

RUN: a trained run's folder (its corpus's tokens are read from the cache, built when missing). Sampling at the
run's [generate] temperature and top-k, seed 0; 5 s prompts continued 8 s.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from pianogen import pipeline
from pianogen.evaluation.evaluate import pick_prompts, segment_codes
from pianogen.generation.generate import GenerationRequest, continue_codes


def motion(codes: torch.Tensor, frame_rate: float) -> tuple[float, float]:
    """codes LongTensor[B, K, T] -> (level-1 changes a second, mean over prompts of the longest unchanged
    stretch in seconds)."""
    level = codes[:, 0]
    changes = float((level[:, 1:] != level[:, :-1]).float().mean()) * frame_rate
    longest = []
    for row in level.tolist():
        best = run = 1
        for before, after in zip(row, row[1:]):
            run = run + 1 if before == after else 1
            best = max(best, run)
        longest.append(best / frame_rate)
    return changes, float(np.mean(longest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--weights", default="0,1,2", help="prompt-prior weights, comma-separated")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--prompts", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recipe, codec, model, _ = pipeline.load_run(args.run, "best", torch.device("cpu"))
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    prompt_frames, frames = round(5 * codec.frame_rate), round(8 * codec.frame_rate)
    chosen = pick_prompts(cache.pieces(args.split), args.prompts, prompt_frames, frames)
    codes = segment_codes(cache, chosen, recipe.codec.levels, prompt_frames + frames)
    print(f"{len(chosen)} prompts of {args.split}: level-1 changes/s, longest hold (s)")
    changes, longest = motion(codes[:, :, prompt_frames:], codec.frame_rate)
    print(f"true continuation: {changes:.1f}, {longest:.2f}")
    g = recipe.generate
    for weight in map(float, args.weights.split(",")):
        request = GenerationRequest(prompt="", seconds=8.0, out=Path("."), temperature=g.temperature, top_k=g.top_k,
                                    top_p=g.top_p, prompt_prior=weight, seed=0)
        with torch.inference_mode():
            sampled = continue_codes(model, codes[:, :, :prompt_frames], frames, request, progress=False)
        changes, longest = motion(sampled, codec.frame_rate)
        print(f"prompt_prior {weight:g}: {changes:.1f}, {longest:.2f}")


if __name__ == "__main__":
    main()
