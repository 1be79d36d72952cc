"""Streaming: chunks decoded with left context equal one-shot decoding, and arrive while sampling goes on."""

from __future__ import annotations

import threading

import pytest
import torch

import pianogen
from pianogen.generation.sampling import make_sampler
from pianogen.generation.stream import decoder_context_frames, stream_audio


def tiny_codec(**phase_free):
    torch.manual_seed(0)
    return pianogen.get_codec("soundstream", sample_rate=8000, channels=4, dim=8, strides=[2, 4], n_levels=2,
                              codebook_size=16, **phase_free).eval()


def tiny_model(name):
    torch.manual_seed(1)
    return pianogen.get_token_model(name, n_levels=2, vocab_size=16, block_size=64, d_model=16, n_layers=1,
                                    n_heads=2, d_ff=32).eval()


def one_shot(model, codec, prompt, n_frames, seed):
    with torch.inference_mode():
        codes = model.generate(prompt, n_frames, make_sampler(1.0, seed=seed))
        return codec.decode(torch.cat([prompt, codes], dim=2))[..., prompt.shape[2] * codec.hop_length:]


@pytest.mark.parametrize("name, phase_free", [("multi_output", {}), ("delay", {}),
                                              ("delay", {"encoder": "magnitude", "decoder": "sines"})])
def test_streamed_audio_equals_one_shot_decoding(name, phase_free):
    codec, model = tiny_codec(**phase_free), tiny_model(name)
    # a codebook-trained codec is not needed: random codebooks decode to a signal that varies with the codes
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer._codebook.embed.normal_()
    # SoundStream's reflect padding makes the sequence's first context_frames frames read ahead: a prompt
    # at least that long keeps the continuation clear of them
    prompt = torch.randint(0, 16, (2, 2, decoder_context_frames(codec)))
    expected = one_shot(model, codec, prompt, 23, seed=4)
    chunks = list(stream_audio(model, codec, prompt, 23, make_sampler(1.0, seed=4), chunk_frames=4))
    assert [c.shape[-1] for c in chunks] == [4 * codec.hop_length] * 5 + [3 * codec.hop_length]
    streamed = torch.cat(chunks, dim=-1)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(streamed, expected, atol=1e-4, rtol=0)


def test_too_little_context_is_not_exact():
    """The receptive field is what makes chunks exact: a context far below it breaks the equality."""
    codec, model = tiny_codec(), tiny_model("multi_output")
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer._codebook.embed.normal_()
    context = decoder_context_frames(codec)
    assert context is not None and context > 2
    prompt = torch.randint(0, 16, (1, 2, context))
    expected = one_shot(model, codec, prompt, 12, seed=2)
    exact = torch.cat(list(stream_audio(model, codec, prompt, 12, make_sampler(1.0, seed=2), 3, context)), -1)
    short = torch.cat(list(stream_audio(model, codec, prompt, 12, make_sampler(1.0, seed=2), 3, 0)), -1)
    torch.testing.assert_close(exact, expected, atol=1e-4, rtol=0)
    assert (short - expected).abs().max() > 1e-3


def test_first_chunk_arrives_while_sampling_continues():
    codec, model = tiny_codec(), tiny_model("multi_output")
    first_chunk_seen = threading.Event()
    sample = make_sampler(1.0, seed=0)
    drawn = []

    def gated_sample(logits):  # frames past the first chunk wait until the consumer has that chunk
        if len(drawn) >= 6 and not first_chunk_seen.wait(timeout=60):
            raise RuntimeError("no chunk came out while sampling was held")
        drawn.append(1)
        return sample(logits)

    chunks = stream_audio(model, codec, torch.randint(0, 16, (1, 2, 4)), 20, gated_sample, chunk_frames=5)
    first = next(chunks)
    assert len(drawn) < 20 and first.shape[-1] == 5 * codec.hop_length
    first_chunk_seen.set()
    rest = list(chunks)
    assert len(drawn) == 20 and sum(c.shape[-1] for c in rest) == 15 * codec.hop_length


def test_sampling_errors_reach_the_consumer():
    codec, model = tiny_codec(), tiny_model("multi_output")

    def broken(logits):
        raise ValueError("sampler broke")

    with pytest.raises(ValueError, match="sampler broke"):
        list(stream_audio(model, codec, torch.randint(0, 16, (1, 2, 4)), 10, broken))


def test_generate_stream_cli_writes_the_one_shot_continuation(trained_run, tmp_path):
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    from pianogen.generation.generate import GenerationRequest, generate

    args = [sys.executable, "-m", "pianogen", "generate", str(trained_run), "--prompt", "test:0", "--seconds", "0.5",
            "--prompt-seconds", "0.4", "--top-k", "20", "--seed", "3", "--stream", "--out", str(tmp_path / "s"),
            "--postfilter", "lowpass:cutoff=0.2", "--prompt-prior", "2"]  # the prior, threaded through both ways
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "first audio after" in done.stderr and not list((tmp_path / "s").glob("*.part"))
    generate(trained_run, GenerationRequest(prompt="test:0", seconds=0.5, out=tmp_path / "g", prompt_seconds=0.4,
                                            top_k=20, seed=3, postfilters=[{"name": "lowpass", "cutoff": 0.2}],
                                            prompt_prior=2.0),
             progress=False)
    # the same final files as one-shot generation: the take spliced onto the original, post-filtered audio
    for name in ("continuation_0.wav", "full_0.wav", "take_0.wav"):
        streamed, sr = sf.read(tmp_path / "s" / name)
        one_shot, sr_one_shot = sf.read(tmp_path / "g" / name)
        assert sr == sr_one_shot and streamed.shape == one_shot.shape and np.abs(one_shot).max() > 0, name
        np.testing.assert_allclose(streamed, one_shot, atol=2 / 32768, err_msg=name)  # 16-bit PCM rounding
    assert len(sf.read(tmp_path / "s/continuation_0.wav")[0]) == 100 * 40
    from safetensors.torch import load_file

    streamed_codes, one_shot_codes = (load_file(tmp_path / d / "codes_0.safetensors") for d in ("s", "g"))
    assert streamed_codes.keys() == one_shot_codes.keys()
    assert all(torch.equal(streamed_codes[k], one_shot_codes[k]) for k in streamed_codes)
    import json

    report = json.loads((tmp_path / "s/generation.json").read_text())
    assert report["stream"]["postfiltered"] and report["postfilters"] == [{"name": "lowpass", "cutoff": 0.2}]
    assert {"take_0.wav", "mel_0.png"} <= set(report["files"])


def test_streamed_chunks_are_post_filtered_as_the_one_shot_file_and_the_first_chunk_is_small():
    from pianogen_filters.lowpass import Lowpass, LowpassConfig

    codec, model = tiny_codec(), tiny_model("multi_output")
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer._codebook.embed.normal_()
    prompt = torch.randint(0, 16, (2, 2, 2 * decoder_context_frames(codec)))
    lowpass = Lowpass(LowpassConfig(cutoff=0.1))
    with torch.inference_mode():
        codes = model.generate(prompt, 23, make_sampler(1.0, seed=4))
        full = lowpass(codec.decode(torch.cat([prompt, codes], dim=2)), codec.sample_rate)
    expected = full[..., prompt.shape[2] * codec.hop_length:]
    received = []
    chunks = list(stream_audio(model, codec, prompt, 23, make_sampler(1.0, seed=4), chunk_frames=8,
                               first_chunk_frames=2, postfilter=lowpass.stream(codec.sample_rate),
                               on_codes=received.append))
    assert [c.shape[-1] // codec.hop_length for c in chunks] == [2, 8, 8, 5]
    assert torch.equal(received[0], codes)
    torch.testing.assert_close(torch.cat(chunks, dim=-1), expected, atol=1e-4, rtol=0)
    raw = torch.cat(list(stream_audio(model, codec, prompt, 23, make_sampler(1.0, seed=4), chunk_frames=8)), -1)
    assert (raw - expected).abs().max() > 1e-3  # the filter really changed the chunks
