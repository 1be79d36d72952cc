"""What the Codec contract declares, seen through a third party's codec registered by an in-test plugin: its
weights are listed by ``codec get``, fetched from 127.0.0.1 and checked against their pin, found by recipes;
it streams with the context it declares; and without latent decoding the Mel loss's decoder mode is one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import pianogen
from pianogen import safetensors_bytes
from pianogen.commands.cli import main
from pianogen.commands.cli_codec import codec_reading
from pianogen.errors import PianogenError
from pianogen.fetch.needs import codec_file, missing
from pianogen.fetch.weights import default_path, get_codec_weights, weights_for_codec
from pianogen.generation.sampling import make_sampler
from pianogen.generation.stream import decoder_alignment_frames, decoder_context_frames, stream_audio
from pianogen.interfaces import Codec, LossContext, WeightsSpec
from tests.local_server import LocalServer

CONTEXT = 2  # frames of latent the frame codec's decoder convolves over before each frame (kernel 3)


class FrameCodec(Codec):
    """A small real codec of a third party: frames of 16 samples, projected to an 8-dim latent and quantised
    by 2-level greedy residual VQ; the decoder mixes each frame's latent with the CONTEXT before it (a causal
    conv, then tanh) and projects it back to 16 samples. It declares that context; it offers no latent decoding."""

    def __init__(self, weights: dict[str, torch.Tensor], context: int | None = CONTEXT) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.n_levels, self.codebook_size = 8000, 16, 2, 8
        self.frame_rate = self.sample_rate / self.hop_length
        for name, tensor in weights.items():
            self.register_buffer(name, tensor)
        self.declared = context
        self.decoded_lengths: list[int] = []  # frames of each decode call (observed, not changed)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        B = wav.shape[0]
        residual = wav.reshape(B, -1, self.hop_length) @ torch.linalg.pinv(self.proj)  # [B, T, D]
        codes = []
        for book in self.books:
            code = torch.cdist(residual, book[None]).argmin(-1)  # [B, T]
            codes.append(code)
            residual = residual - book[code]
        return torch.stack(codes, dim=1)  # [B, K, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self.decoded_lengths.append(codes.shape[2])
        latent = sum(self.books[k][codes[:, k]] for k in range(codes.shape[1])).transpose(1, 2)  # [B, D, T]
        mixed = torch.tanh(F.conv1d(F.pad(latent, (CONTEXT, 0)), self.mix))  # frame t sees t-CONTEXT..t
        B, _, T = mixed.shape
        return (mixed.transpose(1, 2) @ self.proj).reshape(B, 1, T * self.hop_length)

    def codebooks(self) -> torch.Tensor:
        return self.books

    def identity(self) -> dict:
        return {"name": "frame", "config_hash": hashlib.sha256(self.books.numpy().tobytes()).hexdigest()[:16]}

    def decoder_context_frames(self) -> int | None:
        return self.declared


def frame_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"books": torch.randn(2, 8, 8, generator=g) / torch.tensor([1.0, 3.0])[:, None, None],
            "mix": torch.randn(8, 8, CONTEXT + 1, generator=g) / 3, "proj": torch.randn(8, 16, generator=g) / 3}


def frame(checkpoint: str = "") -> FrameCodec:
    """The third party's factory: weights from a safetensors file (nothing else to build)."""
    from safetensors.torch import load_file

    if not Path(checkpoint).is_file():
        raise PianogenError(f"frame weights not found: {checkpoint}")
    return FrameCodec(load_file(checkpoint))


def third_party(url: str, data: bytes) -> type:
    """The in-test plugin: the codec and its weights on the local server, pinned to ``data``'s sha256."""

    class ThirdParty:
        @staticmethod
        @pianogen.hookimpl
        def register_codecs(register):
            register("frame", frame)

        @staticmethod
        @pianogen.hookimpl
        def register_codec_weights(register):
            spec = WeightsSpec(codec="frame", file="frame-v1.safetensors", source=f"{url}/frame-v1.safetensors",
                               sha256=hashlib.sha256(data).hexdigest(), size=len(data), license="MIT",
                               description="a third party's frame codec")
            register("frame-v1", spec)
            # the same codec's weights from a mirror that serves other bytes under the pinned name
            register("frame-tampered", lambda: WeightsSpec(codec="frame", file="frame-t.safetensors",
                                                           source=f"{url}/tampered", sha256=spec.sha256))

    return ThirdParty


def test_third_party_weights_are_listed_fetched_verified_and_found_by_recipes(fresh_registry, isolated_home,
                                                                              capsys):
    data = safetensors_bytes(frame_weights())
    tampered = bytearray(data)
    tampered[-1] ^= 1
    with LocalServer({"/frame-v1.safetensors": data, "/tampered": bytes(tampered)}) as server:
        fresh_registry.register_module(third_party(server.url, data), "third-party", package="frame-codec")
        main(["codec", "get", "--json"])
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
        assert {"frame-v1", "frame-tampered", "soundstream", "encodec"} <= set(rows)  # built-ins listed alike
        assert rows["frame-v1"] == {"name": "frame-v1", "codec": "frame", "present": False, "size": len(data),
                                    "file": str(isolated_home / "codecs" / "frame-v1.safetensors"),
                                    "sha256": hashlib.sha256(data).hexdigest(), "license": "MIT",
                                    "source": f"{server.url}/frame-v1.safetensors",
                                    "description": "a third party's frame codec"}
        main(["codec", "get"])
        assert "frame-v1  (codec frame, 0.0 MB, MIT, sha256 " in capsys.readouterr().out

        main(["codec", "get", "frame-v1"])
        path = Path(capsys.readouterr().out.strip())
        assert path == default_path("frame-v1") and path.read_bytes() == data
        asked = len(server.requests)
        assert get_codec_weights("frame-v1") == path and len(server.requests) == asked  # kept, not fetched again

        with pytest.raises(SystemExit) as refused:  # the pin, not the name, decides: one line, nothing kept
            main(["codec", "get", "frame-tampered"])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and len(err.strip().splitlines()) == 1
        assert f"does not start with {hashlib.sha256(data).hexdigest()}, the pinned digest" in err
        assert sorted(p.name for p in (isolated_home / "codecs").iterdir()) == ["frame-v1.safetensors"]

    codec = pianogen.get_codec("frame", checkpoint=str(path))
    wav = torch.randn(1, 1, 320) * 0.3
    assert codec.decode(codec.encode(wav)).shape == (1, 1, 320)
    assert codec_reading(path) == "frame"  # `codec eval` needs no --codec for a declared file
    # a recipe naming the missing file is told the exact command, --out when it is not the default place
    elsewhere = isolated_home / "mine" / "frame-v1.safetensors"
    recipe = SimpleNamespace(data=SimpleNamespace(source="folder"), codec=SimpleNamespace(
        name="frame", options={"checkpoint": str(elsewhere)}, train_recipe=""))
    assert codec_file("frame", recipe.codec.options) == elsewhere
    assert [n.command for n in missing(recipe)] == [f"pianogen codec get frame-v1 --out {elsewhere}"]
    assert weights_for_codec("frame", Path("other.safetensors")) is None  # two declared, neither by that name
    assert weights_for_codec("frame") is None  # none loaded without a checkpoint: the recipe names its file


def test_codec_get_refuses_what_it_cannot_do_in_one_line(fresh_registry, capsys):
    for argv, message in [(["codec", "get", "frame-v2"], "unknown codec weights 'frame-v2'"),
                          (["codec", "get", "soundstrem"], "did you mean 'soundstream'"),
                          (["codec", "eval", "nowhere.safetensors", "a.wav"], "codec checkpoint not found")]:
        with pytest.raises(SystemExit) as refused:
            main(argv)
        err = capsys.readouterr().err
        assert refused.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    with pytest.raises(ValueError, match="8 to 64 hex digits"):
        WeightsSpec(codec="x", file="x.bin", source="https://example.org/x.bin", sha256="d7cc")


def streamed_and_one_shot(codec: FrameCodec, context: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    model = pianogen.get_token_model("multi_output", n_levels=2, vocab_size=8, block_size=64, d_model=16,
                                     n_layers=1, n_heads=2, d_ff=32).eval()
    prompt = torch.randint(0, 8, (2, 2, 5), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        codes = model.generate(prompt, 14, make_sampler(1.0, seed=3))
        expected = codec.decode(torch.cat([prompt, codes], dim=2))[..., 5 * codec.hop_length:]
    codec.decoded_lengths.clear()
    chunks = stream_audio(model, codec, prompt, 14, make_sampler(1.0, seed=3), chunk_frames=4,
                          context_frames=context)
    return torch.cat(list(chunks), dim=-1), expected


def test_a_third_party_codec_streams_with_the_context_it_declares(one_thread):
    codec = FrameCodec(frame_weights())
    assert decoder_context_frames(codec) == CONTEXT
    streamed, expected = streamed_and_one_shot(codec)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)
    assert codec.decoded_lengths == [CONTEXT + 4] * 3 + [CONTEXT + 2]  # each chunk and its context, no more

    # the contract's default (None, unknown) is exact too, decoding from the start each time
    unknown = FrameCodec(frame_weights(), context=None)
    assert decoder_context_frames(unknown) is None
    streamed, expected = streamed_and_one_shot(unknown)
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)
    assert unknown.decoded_lengths == [9, 13, 17, 19]
    # what the declaration is for: one frame less than the decoder sees and the chunks are no longer exact
    streamed, expected = streamed_and_one_shot(codec, context=CONTEXT - 1)
    assert (streamed - expected).abs().max() > 1e-3

    for wrong in (-1, 2.5, True):
        with pytest.raises(PianogenError, match="declares decoder_context_frames"):
            decoder_context_frames(FrameCodec(frame_weights(), context=wrong))
    assert decoder_alignment_frames(codec) == 1  # the contract's default: chunks may start at any frame
    codec.decoder_alignment_frames = lambda: 0
    with pytest.raises(PianogenError, match=r"declares decoder_alignment_frames\(\) = 0; .* >= 1$"):
        decoder_alignment_frames(codec)


def test_soundstream_declares_the_receptive_field_streaming_read_off_its_layers():
    assert pianogen.get_codec("soundstream").decoder_context_frames() == 28  # 0.35 s at 80 frames/s


def test_mel_decoder_mode_on_a_codec_without_latent_decoding_is_one_line(tmp_path):
    codec = FrameCodec(frame_weights())
    assert not codec.decodes_latent and pianogen.get_codec("soundstream", channels=4, dim=8).decodes_latent
    ctx = LossContext(codec=codec, levels=2, cache_dir=tmp_path, train_codes=lambda: (
        torch.randint(0, 8, (4, 2, 32), generator=torch.Generator().manual_seed(s)) for s in range(20)))
    with pytest.raises(PianogenError) as refused:
        pianogen.get_loss("mel", reconstruction="decoder").prepare(ctx)
    message = str(refused.value)
    assert "needs latent decoding, which codec 'FrameCodec' does not offer" in message and "\n" not in message
    with pytest.raises(PianogenError, match=r"^codec 'FrameCodec' cannot decode latents"):
        codec.decode_latent(torch.zeros(1, 8, 4))
    # the linear stand-in, fitted to decode(), needs nothing more of it
    loss_fn = pianogen.get_loss("mel", fit_batches=2, fit_frames=32, n_mels=16)
    loss_fn.prepare(ctx)
    value, _ = loss_fn(torch.randn(1, 2, 32, 8), torch.randint(0, 8, (1, 2, 32)))
    assert torch.isfinite(value) and value > 0
