"""After a prompt, how much of the model's level-1 probability goes, frame by frame, to codes that sound much
louder than the prompt's end: what a model expects after a lone note's quiet tail, given the true tail
(teacher-forced) and given its own (free-running).

    python benchmarks/loud_codes.py RUN [--sets salamander:test:8,salamander:train:8,all:validation:8]
                                        [--louder 20] [--checkpoint best] [--prompt-seconds 5] [--seconds 8]

RUN: a trained run's folder or a built-in run's name. Each level-1 code's loudness is the median level (dB) of
the frames it codes in the decoded training pieces (every 12th piece, up to 60). For each set (group:split:
prompts, as `sampler_notes.py`): 5 s prompts, 8 s after (or as asked); the reference is the mean loudness of the
prompt's last second's codes; per frame, the probability the model gives to codes ``--louder`` dB or more above
it, with the run's sampler (its prompt prior included) drawing the free-running frames. A lone note's true tail
holds no such code, so the sum over 8 s is how many loud frames the model expects where none come. One JSON line
per set and mode on stdout.
"""

import argparse
import json

import numpy as np
import torch
from sampler_notes import Group

from pianogen import pipeline
from pianogen.evaluation.evaluate import pick_prompts, segment_codes
from pianogen.generation.sampling import make_sampler
from pianogen.runs import resolve_run


def code_loudness(cache, codec, levels: int, every: int = 12, most: int = 60) -> torch.Tensor:
    """FloatTensor[V]: the median frame level (dB) of each level-1 code in decoded training pieces (-100: unseen)."""
    seen: list[list[float]] = [[] for _ in range(codec.codebook_size)]
    hop = codec.hop_length
    for piece in cache.pieces("train")[::every][:most]:
        codes = torch.from_numpy(np.asarray(cache.codes(piece)[:levels], dtype=np.int64))[None]
        with torch.inference_mode():
            wav = codec.decode(codes).reshape(-1).float()
        frames = min(codes.shape[-1], wav.numel() // hop)
        level = 10 * torch.log10(wav[:frames * hop].view(frames, hop).pow(2).mean(1) + 1e-10)
        for code, db in zip(codes[0, 0, :frames].tolist(), level.tolist()):
            seen[code].append(db)
    return torch.tensor([float(np.median(s)) if s else -100.0 for s in seen])


@torch.inference_mode()
def forced_level1(model, codes: torch.Tensor, start: int, frames: int) -> torch.Tensor:
    """Level-1 logits FloatTensor[B, frames, V] for frames start..start+frames-1 of ``codes`` [B, K, T], each from
    the true codes before it, with a context of half to all of the model's block (as generation slides)."""
    block, half, out = model.block_size, model.block_size // 2, []
    t = start
    while t < start + frames:
        begin = max(0, t - half)
        end = min(begin + block, start + frames)  # predict frames t..end-1 from codes[begin:frame]
        logits = model(codes[:, :, begin:end - 1])[:, 0].float()  # [B, end-1-begin, V]: frame j+1 from j
        out.append(logits[:, t - 1 - begin:])
        t = end
    return torch.cat(out, 1)


def free_level1(model, prompt: torch.Tensor, frames: int, settings) -> torch.Tensor:
    """Level-1 logits FloatTensor[B, frames, V] of the model continuing ``prompt`` with the run's sampler."""
    draw = make_sampler(settings.temperature, settings.top_k, settings.top_p, 0, prompt=prompt,
                        prompt_prior=settings.prompt_prior)
    seen: list[torch.Tensor] = []

    def sample(logits, previous=None):
        seen.append(logits[:, 0].float())  # level 1 of the frame (of the step, in a delay pattern)
        return draw(logits, previous)

    sample.reads_previous = True
    with torch.inference_mode():
        model.generate(prompt, frames, sample)
    return torch.stack(seen[:frames], 1)  # a delay pattern draws level 1 of frame t at step t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", metavar="RUN")
    parser.add_argument("--sets", default="salamander:test:8,salamander:train:8,all:validation:8")
    parser.add_argument("--louder", type=float, default=20.0, help="dB above the prompt's last second")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--prompt-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recipe, codec, model, _ = pipeline.load_run(resolve_run(args.run).path, args.checkpoint, torch.device("cpu"))
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    K = model.n_levels
    loud = code_loudness(cache, codec, K)
    P, F = round(args.prompt_seconds * codec.frame_rate), round(args.seconds * codec.frame_rate)
    per_s = round(codec.frame_rate)
    for part in args.sets.split(","):
        group, split, n = part.split(":")
        chosen = pick_prompts(Group(cache, group).pieces(split), int(n), P, F)
        codes = segment_codes(cache, chosen, K, P + F)
        prompt = codes[:, :, :P]
        reference = loud[prompt[:, 0, -per_s:]].mean(1)  # [B] dB
        for mode in ("teacher-forced", "free-running"):
            if mode == "teacher-forced":
                m = forced_level1(model, codes, P, F).softmax(-1)  # [B, F, V]
            else:
                m = free_level1(model, prompt, F, recipe.generate).softmax(-1)
            m = (m * (loud >= reference[:, None, None] + args.louder)).sum(-1)  # [B, F]
            print(json.dumps({"run": str(args.run), "set": part, "prompts": len(chosen), "mode": mode,
                              "louder_db": args.louder, "frames": F,
                              "loud_probability_by_second": [round(float(m[:, i * per_s:(i + 1) * per_s].mean()), 4)
                                                             for i in range(max(1, F // per_s))],
                              "expected_loud_frames": round(float(m.sum(1).mean()), 2)}), flush=True)


if __name__ == "__main__":
    main()
