"""Where time to first audio goes when streaming a continuation: prompt encoding with the codec, the
token model's prefill of the prompt, the first chunk (its frames sampled and decoded); and the sustained
real-time factor after it.

    nice -n 15 python benchmarks/stream_latency.py [--prompt-seconds 5] [--seconds 4] [--precision int8]

The novel recipe's token model and the reference-size SoundStream at random initialisation (speed does
not depend on the weights), a prompt of synthetic piano, batch 1, top-k 250, torch's default threads
(sampling and decoding one each on 2 cores). Wall clock: on a shared machine the load is in the numbers.
"""

import argparse
import json
import time

import numpy as np
import torch
from pianogen_data import synth

import pianogen
from pianogen.bench import token_model
from pianogen.generation.precision import in_precision
from pianogen.generation.sampling import make_sampler
from pianogen.generation.stream import stream_audio

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--prompt-seconds", type=float, default=5.0)
parser.add_argument("--seconds", type=float, default=4.0, help="continuation streamed")
parser.add_argument("--precision", default="fp32")
parser.add_argument("--first-chunk-frames", type=int, default=4)
parser.add_argument("--chunk-frames", type=int, default=20)
args = parser.parse_args()

codec = pianogen.get_codec("soundstream").eval()
model = in_precision(token_model("novel", codec.codebook_size, torch.device("cpu")).eval(), args.precision)
rng = np.random.default_rng(0)
piano = synth.render(synth.compose(rng, args.prompt_seconds + 1), rng, sr=codec.sample_rate)  # stereo [2, S]
wav = torch.from_numpy(piano.mean(axis=0))[None, None, :round(args.prompt_seconds * codec.sample_rate)]
n_frames = round(args.seconds * codec.frame_rate)
sample = make_sampler(1.0, top_k=250, seed=0)
with torch.inference_mode():  # warm-up: kernels, allocator, the folded tables
    warm = codec.encode(wav[..., : codec.hop_length * 40])[:, :4]
    list(stream_audio(model, codec, warm, 2, sample, chunk_frames=2))

    start = time.perf_counter()
    prompt = codec.encode(wav)[:, :4]
    encoded = time.perf_counter()
    model.trunk.setup_caches(1, prompt.shape[-1] + 1)
    model.step_logits(prompt, 0, last_only=True)  # the prefill alone, timed apart
    model.trunk.clear_caches()
    prefill_s = time.perf_counter() - encoded
    chunks, times = [], []
    stream_start = time.perf_counter()
    for chunk in stream_audio(model, codec, prompt, n_frames, sample, chunk_frames=args.chunk_frames,
                              first_chunk_frames=args.first_chunk_frames):
        times.append(time.perf_counter() - stream_start)
        chunks.append(chunk.shape[-1] / codec.sample_rate)
    total = time.perf_counter() - stream_start
after_first = sum(chunks[1:])
print(json.dumps({
    "prompt_seconds": args.prompt_seconds, "prompt_frames": prompt.shape[-1], "precision": args.precision,
    "threads": torch.get_num_threads(), "encode_s": encoded - start, "prefill_s": prefill_s,
    "stream_first_chunk_s": times[0], "time_to_first_audio_s": encoded - start + times[0],
    "first_chunk_audio_s": chunks[0],
    "sustained_realtime_factor": after_first / (total - times[0]) if len(chunks) > 1 else None,
    "stream_realtime_factor": sum(chunks) / total}, indent=1))
