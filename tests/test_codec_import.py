"""Importing a haydenshively/SoundStream 0.0.1 checkpoint (vector-quantize-pytorch 1.6.11 RVQ).

The checkpoint is built here in the reference's exact key layout, and the reference model is
computed functionally from those keys (reflect-padded causal convs, ELU residual units,
trimmed transposed convs, residual nearest-codeword search), independently of our modules.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pianogen_soundstream.convert import import_reference

import pianogen
from pianogen.errors import PianogenError

C, D, STRIDES, N_Q, V = 4, 16, (2, 4, 5, 5), 3, 32

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the reference's keys: SoundStream(n_q, V, D, C, strides)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(prefix: str, c_in: int, c_out: int, k: int, transposed: bool = False) -> None:
        shape = (c_in, c_out, k) if transposed else (c_out, c_in, k)
        sd[f"{prefix}.conv.weight"] = torch.randn(shape, generator=g) / (c_in * k) ** 0.5
        sd[f"{prefix}.conv.bias"] = torch.randn(c_out, generator=g) * 0.01

    def units(prefix: str, c: int, first: int) -> None:
        for j in range(3):
            conv(f"{prefix}.layers.{first + j}.layers.0", c, c, 7)
            conv(f"{prefix}.layers.{first + j}.layers.2", c, c, 1)

    n = len(STRIDES)
    conv("encoder.layers.0", 1, C, 7)
    for i, s in enumerate(STRIDES, 1):
        units(f"encoder.layers.{i}", C * 2 ** (i - 1), 0)
        conv(f"encoder.layers.{i}.layers.3", C * 2 ** (i - 1), C * 2**i, 2 * s)
    conv(f"encoder.layers.{n + 1}", C * 2**n, D, 3)
    conv("decoder.layers.0", D, C * 2**n, 7)
    for i, s in enumerate(reversed(STRIDES), 1):
        c_out = C * 2 ** (n - i)
        conv(f"decoder.layers.{i}.layers.0", 2 * c_out, c_out, 2 * s, transposed=True)
        units(f"decoder.layers.{i}", c_out, 1)
    conv(f"decoder.layers.{n + 1}", C, 1, 7)
    for q in range(N_Q):
        embed = torch.randn(1, V, D, generator=g) * 0.3
        sd |= {f"quantizer.layers.{q}._codebook.{k}": v for k, v in {
            "initted": torch.tensor([1.0]), "cluster_size": torch.rand(1, V, generator=g),
            "embed_avg": embed.clone(), "embed": embed}.items()}
    return sd


def _conv(sd, prefix, x, stride=1, dilation=1):
    w = sd[f"{prefix}.conv.weight"]
    pad = dilation * (w.shape[-1] - 1) + 1 - stride
    return F.conv1d(F.pad(x, [pad, 0], mode="reflect"), w, sd[f"{prefix}.conv.bias"], stride, dilation=dilation)


def _units(sd, prefix, x, first):
    for j, d in enumerate((1, 3, 9)):
        p = f"{prefix}.layers.{first + j}.layers"
        x = x + F.elu(_conv(sd, f"{p}.2", F.elu(_conv(sd, f"{p}.0", x, dilation=d))))
    return x


def reference_codes_and_audio(sd, wav):
    n = len(STRIDES)
    x = _conv(sd, "encoder.layers.0", wav)
    for i, s in enumerate(STRIDES, 1):
        x = _conv(sd, f"encoder.layers.{i}.layers.3", _units(sd, f"encoder.layers.{i}", x, 0), stride=s)
    residual = _conv(sd, f"encoder.layers.{n + 1}", x).transpose(1, 2)  # [B, T, D]
    codes, latent = [], 0
    for q in range(N_Q):
        embed = sd[f"quantizer.layers.{q}._codebook.embed"][0]
        idx = torch.cdist(residual, embed[None].expand(len(residual), -1, -1)).argmin(-1)  # [B, T]
        codes.append(idx)
        residual = residual - embed[idx]
        latent = latent + embed[idx]
    x = _conv(sd, "decoder.layers.0", latent.transpose(1, 2))  # decoder(sum_k embed_k[code_k])
    for i, s in enumerate(reversed(STRIDES), 1):
        p = f"decoder.layers.{i}.layers.0.conv"
        x = F.conv_transpose1d(x, sd[f"{p}.weight"], sd[f"{p}.bias"], s)[..., : x.shape[-1] * s]
        x = _units(sd, f"decoder.layers.{i}", x, 1)
    return torch.stack(codes, 1), _conv(sd, f"decoder.layers.{n + 1}", x)


def test_import_matches_reference(tmp_path):
    sd = reference_state()
    torch.save(sd, tmp_path / "ref.pt")
    import_reference(tmp_path / "ref.pt", tmp_path / "ours.safetensors")
    codec = pianogen.get_codec("soundstream", checkpoint=str(tmp_path / "ours.safetensors"))
    assert (codec.config.channels, codec.config.dim, codec.config.strides) == (C, D, list(STRIDES))
    assert (codec.n_levels, codec.codebook_size, codec.sample_rate) == (N_Q, V, 16000)
    wav = torch.randn(2, 1, 8000, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        ref_codes, ref_audio = reference_codes_and_audio(sd, wav)
    codes = codec.encode(wav)
    assert torch.equal(codes, ref_codes)
    torch.testing.assert_close(codec.decode(codes), ref_audio, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(codec.codebooks(), torch.cat([sd[f"quantizer.layers.{q}._codebook.embed"]
                                                             for q in range(N_Q)]))


@pytest.mark.parametrize("key, shape, message", [
    ("quantizer.layers.1._codebook.embed", (2, V, D), "single codebook head"),
    ("decoder.layers.2.layers.1.layers.0.conv.weight", (C * 4, C * 4, 5), "has shape"),
    ("quantizer.layers.0._codebook.embed_avg", None, "missing 'quantizer.layers.0._codebook.embed_avg'"),
])
def test_import_rejects_other_shapes(tmp_path, key, shape, message):
    sd = reference_state()
    if shape is None:
        del sd[key]
    else:
        sd[key] = torch.zeros(shape)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(PianogenError, match=message):
        import_reference(tmp_path / "bad.pt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_import_rejects_non_checkpoints(tmp_path):
    with pytest.raises(PianogenError, match="not found"):
        import_reference(tmp_path / "nope.pt", tmp_path / "out.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(PianogenError, match="not a PyTorch state dict"):
        import_reference(tmp_path / "junk.pt", tmp_path / "out.safetensors")
    torch.save({"model": {"encoder.layers.0.conv.weight": torch.zeros(1)}}, tmp_path / "nested.pt")
    with pytest.raises(PianogenError, match="state dict of tensors"):
        import_reference(tmp_path / "nested.pt", tmp_path / "out.safetensors")


def test_the_soundstream_plugin_adds_codec_import_soundstream_to_the_cli(tmp_path, capsys):
    """`pianogen codec import soundstream` comes from the plugin's register_commands hook; cli.py knows no
    soundstream. Its file holds what the plugin's converter writes (tensors and metadata)."""
    from safetensors import safe_open

    from pianogen.commands.cli import main

    torch.save(reference_state(), tmp_path / "ref.pt")
    main(["codec", "import", "soundstream", str(tmp_path / "ref.pt"), str(tmp_path / "cli.safetensors")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli.safetensors")
    import_reference(tmp_path / "ref.pt", tmp_path / "api.safetensors")
    with safe_open(tmp_path / "cli.safetensors", "pt") as cli, safe_open(tmp_path / "api.safetensors", "pt") as api:
        assert cli.metadata() == api.metadata() and sorted(cli.keys()) == sorted(api.keys())
        assert all(torch.equal(cli.get_tensor(k), api.get_tensor(k)) for k in api.keys())


def test_import_matches_the_reference_package(tmp_path):
    """The same check against haydenshively/SoundStream 0.0.1 itself (with vector-quantize-pytorch 1.6.11)."""
    reference = pytest.importorskip("soundstream.soundstream")
    ref = reference.SoundStream(n_q=N_Q, codebook_size=V, D=D, C=C, strides=STRIDES)
    ref.load_state_dict(reference_state(seed=3))
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    import_reference(tmp_path / "ref.pt", tmp_path / "ours.safetensors")
    codec = pianogen.get_codec("soundstream", checkpoint=str(tmp_path / "ours.safetensors"))
    wav = torch.randn(2, 1, 8000, generator=torch.Generator().manual_seed(2)) * 0.3
    with torch.no_grad():
        _, ref_codes, _ = ref.quantizer(ref.encoder(wav).permute(0, 2, 1))  # [B, T, K]
        ref_audio = ref(wav)  # encode -> quantize -> decode, the package's own end-to-end path
    codes = codec.encode(wav)
    assert torch.equal(codes, ref_codes.permute(0, 2, 1))
    torch.testing.assert_close(codec.decode(codes), ref_audio, atol=1e-5, rtol=1e-4)
