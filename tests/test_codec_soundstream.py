"""The soundstream codec: shapes, causality, any-k decoding, checkpoints and their errors."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

import pianogen
from pianogen.errors import PianogenError

TINY = dict(sample_rate=8000, channels=4, dim=16, strides=[2, 4, 5], n_levels=4, codebook_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_codec(**overrides) -> "pianogen.interfaces.Codec":
    """A tiny random codec whose codebooks are k-means-initialised on noise, so codes vary."""
    torch.manual_seed(0)
    codec = pianogen.get_codec("soundstream", **{**TINY, **overrides})
    codec.init_codebooks(torch.randn(4, 1, 4000))
    return codec.eval()


@pytest.mark.parametrize("strides, sample_rate", [([2, 4, 5], 8000), ([2, 2, 2, 2], 4000), ([4, 5], 8000)])
def test_shapes_and_frame_counts(strides, sample_rate):
    codec = tiny_codec(strides=strides, sample_rate=sample_rate)
    hop = 1
    for s in strides:
        hop *= s
    assert codec.hop_length == hop and codec.frame_rate == sample_rate / hop
    for n in (sample_rate, sample_rate + 1, 7):  # exact, one over a frame, shorter than any pad
        codes = codec.encode(torch.randn(3, 1, n))
        frames = -(-n // hop)
        assert codes.shape == (3, 4, frames) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < 32
        assert codec.decode(codes).shape == (3, 1, frames * hop)
    assert codec.codebooks().shape == (4, 32, 16)


def test_reference_size_topology():
    codec = pianogen.get_codec("soundstream")
    assert (codec.sample_rate, codec.frame_rate, codec.n_levels, codec.codebook_size) == (16000, 80.0, 16, 1024)
    sd = codec.state_dict()
    assert sd["encoder.layers.0.conv.weight"].shape == (58, 1, 7)
    assert sd["encoder.layers.4.layers.3.conv.weight"].shape == (16 * 58, 8 * 58, 10)  # stride 5, kernel 10
    assert sd["encoder.layers.5.conv.weight"].shape == (256, 16 * 58, 3)
    assert sd["decoder.layers.1.layers.0.conv.weight"].shape == (16 * 58, 8 * 58, 10)  # ConvTranspose1d
    assert sd["quantizer.layers.15._codebook.embed"].shape == (1024, 256)


def test_causal_encoder_and_decoder():
    codec = tiny_codec()
    x = torch.randn(1, 1, 8000)
    cut = 4000  # frame 100 at hop 40
    y = x.clone()
    y[..., cut:] = torch.randn(1, 1, 8000 - cut)
    cx, cy = codec.encode(x), codec.encode(y)
    assert torch.equal(cx[..., : cut // 40], cy[..., : cut // 40])
    assert not torch.equal(cx, cy)
    changed = cx.clone()
    changed[..., 100:] = (changed[..., 100:] + 1) % 32
    wx, wc = codec.decode(cx), codec.decode(changed)
    assert torch.equal(wx[..., :cut], wc[..., :cut]) and not torch.equal(wx, wc)


def test_decode_first_k_levels_adds_codebook_vectors():
    codec = tiny_codec()
    codes = codec.encode(torch.randn(2, 1, 4000))
    books = codec.codebooks()
    for k in range(1, 5):
        latent = sum(books[i][codes[:, i]] for i in range(k)).transpose(1, 2)  # [B, D, T]
        torch.testing.assert_close(codec.decode(codes[:, :k]), codec.decode_latent(latent))
    with pytest.raises(PianogenError, match="1..4"):
        codec.decode(torch.zeros(1, 5, 3, dtype=torch.long))


def test_encode_latent_is_what_the_levels_approximate():
    """Each added level brings the quantized sum closer to encode_latent's output, and level 1's code
    is its nearest codebook vector."""
    codec = tiny_codec()
    wav = torch.randn(2, 1, 4000)
    latent, codes, books = codec.encode_latent(wav), codec.encode(wav), codec.codebooks()
    assert latent.shape == (2, 16, 100)
    errors = []
    for k in range(1, 5):
        quantized = sum(books[i][codes[:, i]] for i in range(k)).transpose(1, 2)
        errors.append((latent - quantized).pow(2).sum().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.8 * errors[0]
    nearest = torch.cdist(latent.transpose(1, 2), books[0][None].expand(2, -1, -1)).argmin(-1)
    assert torch.equal(nearest, codes[:, 0])


def test_checkpoint_roundtrip_and_identity(tmp_path):
    codec = tiny_codec()
    path = tmp_path / "c.safetensors"
    codec.save(path)
    loaded = pianogen.get_codec("soundstream", checkpoint=str(path))
    assert loaded.config == codec.config
    x = torch.randn(1, 1, 4000)
    assert torch.equal(loaded.encode(x), codec.encode(x))
    assert loaded.identity() == codec.identity() and loaded.identity()["name"] == "soundstream"
    assert loaded.identity() != tiny_codec(codebook_size=64).identity()
    # the identity is what makes the tokens: the decoder is not in it, the encoder and the codebooks are
    with torch.no_grad():
        next(loaded.decoder.parameters()).add_(0.1)
        assert loaded.identity() == codec.identity()
        next(loaded.encoder.parameters()).add_(0.1)
        assert loaded.identity() != codec.identity()
        next(loaded.encoder.parameters()).sub_(0.1)
        loaded.quantizer.layers[1]._codebook.embed.add_(0.1)
        assert loaded.identity() != codec.identity()
    # agreeing architecture keys are fine; $PIANOGEN_HOME expands even when only the recipe names it
    pianogen.get_codec("soundstream", checkpoint=str(path), channels=4, strides=(2, 4, 5))
    home_ckpt = pianogen.paths.home() / "codecs" / "x.safetensors"
    codec.save(home_ckpt)
    assert pianogen.get_codec("soundstream", checkpoint="$PIANOGEN_HOME/codecs/x.safetensors").n_levels == 4


def test_snake_activation_is_a_saved_architecture_choice(tmp_path):
    """activation="snake" puts a learned per-channel alpha in every residual unit, survives a save, changes
    the identity, and leaves the reference's ELU codec's config text (and so its hash) as it was."""
    elu, snake = tiny_codec(), tiny_codec(activation="snake")
    alphas = [k for k in snake.state_dict() if k.endswith(".alpha")]
    assert len(alphas) == 2 * 3 * 3 * 2 and not any(k.endswith(".alpha") for k in elu.state_dict())
    assert "activation" not in elu.config.to_json() and snake.identity() != elu.identity()
    path = tmp_path / "snake.safetensors"
    snake.save(path)
    loaded = pianogen.get_codec("soundstream", checkpoint=str(path)).eval()
    x = torch.randn(1, 1, 4000)
    assert loaded.config.activation == "snake"
    assert torch.equal(loaded.decode(loaded.encode(x)), snake.decode(snake.encode(x)))
    with pytest.raises(PianogenError, match="'activation' must be one of"):
        pianogen.get_codec("soundstream", activation="relu")


def test_checkpoint_errors(tmp_path):
    codec = tiny_codec()
    path = tmp_path / "c.safetensors"
    codec.save(path)
    with pytest.raises(PianogenError, match="'channels'"):
        pianogen.get_codec("soundstream", checkpoint=str(path), channels=8)
    with pytest.raises(PianogenError, match="not found: .*missing.safetensors"):
        pianogen.get_codec("soundstream", checkpoint=str(tmp_path / "missing.safetensors"))
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(PianogenError, match="no PianoGen codec metadata"):
        pianogen.get_codec("soundstream", checkpoint=str(bare))
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"codec": "encodec", "config": json.dumps(TINY)})
    with pytest.raises(PianogenError, match="written by codec 'encodec'"):
        pianogen.get_codec("soundstream", checkpoint=str(other))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(PianogenError, match="not a safetensors"):
        pianogen.get_codec("soundstream", checkpoint=str(junk))
    with pytest.raises(PianogenError, match="unknown key 'chanels'.*did you mean 'channels'"):
        pianogen.get_codec("soundstream", chanels=4)
    with pytest.raises(PianogenError, match="'strides'"):
        pianogen.get_codec("soundstream", strides=[])


RESAVE = """
import sys, torch, pianogen
codec = pianogen.get_codec("soundstream", checkpoint=sys.argv[1])
codec.save(sys.argv[2])
metadata = {f"key{i}": str(i) for i in range(8)}  # 8! orders: a random one would differ between processes
open(sys.argv[3], "wb").write(pianogen.safetensors_bytes({"w": torch.arange(3)}, metadata))
print(codec.identity()["config_hash"])
"""


def test_the_same_codec_saved_in_two_processes_gives_the_same_bytes(tmp_path):
    """safetensors writes its metadata table in a per-process random order; ours is sorted, so a codec's file
    hash and identity (which keys the token cache) depend on its contents alone."""
    import hashlib
    import os
    import subprocess
    import sys

    from safetensors.torch import load

    first = tmp_path / "first.safetensors"
    tiny_codec().save(first)
    hashes = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run([sys.executable, "-c", RESAVE, str(first), str(tmp_path / f"codec{seed}"),
                               str(tmp_path / f"meta{seed}")], capture_output=True, text=True, env=env, check=True)
        hashes.append(done.stdout.strip())
    assert (tmp_path / "codec1").read_bytes() == (tmp_path / "codec2").read_bytes() == first.read_bytes()
    assert (tmp_path / "meta1").read_bytes() == (tmp_path / "meta2").read_bytes()
    assert hashes[0] == hashes[1] == pianogen.get_codec("soundstream", checkpoint=str(first)).identity()["config_hash"]
    assert torch.equal(load((tmp_path / "meta1").read_bytes())["w"], torch.arange(3))  # still a valid file
    assert hashlib.sha256(first.read_bytes()).hexdigest() == pianogen.get_codec(
        "soundstream", checkpoint=str(first)).weights_sha256


@pytest.mark.parametrize("config, message", [
    ("{not json", "its metadata 'config' is not JSON"),
    ("[1, 2]", "is not a JSON object, got list"),
    ('{"channels": "four"}', "config 'channels' must be int, got 'four'"),
    ('{"strides": [2, "x"]}', "config 'strides' must be list[int]"),
    ('{"ema_decay": true}', "config 'ema_decay' must be float"),
    ('{"channels": -3}', "not a usable soundstream config (soundstream: 'channels' must be >= 1"),
])
def test_a_codec_file_with_a_bad_config_is_one_line(tmp_path, config, message):
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"codec": "soundstream", "config": config})
    with pytest.raises(PianogenError, match=re.escape(message)):
        pianogen.get_codec("soundstream", checkpoint=str(path))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_codec_follows_to_cuda():
    codec = tiny_codec().to("cuda")
    codes = codec.encode(torch.randn(2, 1, 4000, device="cuda"))
    assert codes.device.type == "cuda" and codec.decode(codes).device.type == "cuda"
    assert codec.codebooks().device.type == "cuda"
