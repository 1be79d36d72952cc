"""What each sampler makes of a run's continuations, heard as notes: notes/s, struck notes/s, distinct pitches and
pitch-class correlation beside the true continuation's, per sampler setting, on one or more parts of its corpus.

    python benchmarks/sampler_notes.py RUN [--samplers 0.9:100:0:1,1.0:0:0:1]
                                           [--sets salamander:train:8,all:validation:12]

RUN: a trained run's folder or a built-in run's name. A sampler is temperature:top_k:top_p:prompt_prior. A set is
group:split:prompts, where group picks the pieces of one part of a `mix` corpus (`salamander`) or `all`. 5 s
prompts continued 8 s, seed 0, as `pianogen eval` scores them (one JSON line per sampler and set, on stdout).
"""

import argparse
import json

import torch

from pianogen import pipeline
from pianogen.evaluation.evaluate import continuation_metrics
from pianogen.runs import resolve_run

SHOWN = ("notes_per_second", "struck_notes_per_second", "distinct_pitches", "pitch_class_correlation")


class Group:
    """The token cache's pieces of one group (a part of a `mix` corpus); everything else as the cache."""

    def __init__(self, cache, group: str):
        self.cache, self.group = cache, group

    def pieces(self, split=None):
        return [p for p in self.cache.pieces(split) if self.group == "all" or p.get("group") == self.group]

    def __getattr__(self, name):
        return getattr(self.cache, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", metavar="RUN")
    parser.add_argument("--samplers", default="0.9:100:0:1",
                        help="temperature:top_k:top_p:prompt_prior, comma-separated")
    parser.add_argument("--sets", default="salamander:train:8,all:validation:12", help="group:split:prompts, ...")
    parser.add_argument("--prompt-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    device = torch.device("cpu")
    recipe, codec, model, _ = pipeline.load_run(resolve_run(args.run).path, "best", device)
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    for spec in args.samplers.split(","):
        temperature, top_k, top_p, prior = spec.split(":")
        g = recipe.generate
        g.temperature, g.top_k, g.top_p, g.prompt_prior = float(temperature), int(top_k), float(top_p), float(prior)
        for part in args.sets.split(","):
            group, split, prompts = part.split(":")
            block, _ = continuation_metrics(recipe, codec, model, Group(cache, group), split, int(prompts),
                                            args.prompt_seconds, args.seconds, 0, device, False)
            notes = block["notes"]
            print(json.dumps({"sampler": spec, "set": part, "prompts": block["n_prompts"],
                              **{name: {m: round(notes[name][m], 3) for m in SHOWN if m in notes[name]}
                                 for name in ("model", "true")}}), flush=True)


if __name__ == "__main__":
    main()
