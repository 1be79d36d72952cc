"""The encodec codec: weights from a local file in the official layout, the same codes as encodec's own model."""

from __future__ import annotations

import pytest
import torch
from encodec import EncodecModel

import pianogen
from pianogen.errors import PianogenError

WEIGHTS = "encodec_24khz-d7cc33bc.th"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """encodec's 24 kHz model with random weights, its codebooks k-means-initialised (by one training-mode
    pass, as encodec does) so codes vary, saved as the official file."""
    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    for layer in model.quantizer.vq.layers:
        layer._codebook.kmeans_iters = 1  # encodec's k-means is O(samples x codes x dim) in memory: keep it short
    with torch.no_grad():
        model.quantizer.train()(model.encoder(torch.randn(2, 1, 12000) * 0.1), model.frame_rate, 24.0)
    folder = tmp_path_factory.mktemp("encodec")
    torch.save(model.state_dict(), folder / WEIGHTS)
    return model.eval(), folder


def test_same_codes_and_audio_as_the_encodec_package(reference):
    model, folder = reference
    codec = pianogen.get_codec("encodec", checkpoint=str(folder), bandwidth=6.0)
    assert (codec.sample_rate, codec.frame_rate, codec.n_levels, codec.codebook_size) == (24000, 75.0, 8, 1024)
    wav = torch.randn(2, 1, 24000) * 0.1
    model.set_target_bandwidth(6.0)
    with torch.no_grad():
        (expected, _), = model.encode(wav)
        expected_audio = model.decode([(expected, None)])
    codes = codec.encode(wav)
    assert codes.shape == (2, 8, 75) and len(set(codes.flatten().tolist())) > 10
    assert torch.equal(codes, expected)
    assert torch.allclose(codec.decode(codes), expected_audio, atol=1e-5)
    assert codec.codebooks().shape == (8, 1024, 128)
    assert codec.decode(codes[:, :2]).shape == (2, 1, 24000)  # the first k levels decode too


def test_bandwidth_selects_levels_and_identity(reference):
    _, folder = reference
    low = pianogen.get_codec("encodec", checkpoint=str(folder / WEIGHTS), bandwidth=1.5)
    high = pianogen.get_codec("encodec", checkpoint=str(folder), bandwidth=24.0)
    assert (low.n_levels, high.n_levels) == (2, 32)
    assert low.identity() != high.identity()


def test_missing_or_wrong_weights_are_clear(tmp_path):
    with pytest.raises(PianogenError, match=WEIGHTS):
        pianogen.get_codec("encodec", checkpoint=str(tmp_path))
    (tmp_path / WEIGHTS).write_bytes(b"not a checkpoint")
    with pytest.raises(PianogenError, match="not an encodec state dict"):
        pianogen.get_codec("encodec", checkpoint=str(tmp_path))
    with pytest.raises(PianogenError, match="bandwidth"):
        pianogen.get_codec("encodec", checkpoint=str(tmp_path), bandwidth=5.0)


def test_a_pickle_with_code_is_refused_in_one_line_without_torchs_advice(tmp_path):
    import torch

    torch.save({"weights": torch.zeros(2), "hook": print}, tmp_path / WEIGHTS)  # unpickling it would call code
    with pytest.raises(PianogenError) as refused:
        pianogen.get_codec("encodec", checkpoint=str(tmp_path))
    message = str(refused.value)
    assert message.startswith(f"refusing to load {tmp_path / WEIGHTS}: it holds Python objects other than tensors")
    assert "\n" not in message and "weights_only" not in message


def test_decode_latent_is_decode_of_the_codebook_sum_and_has_gradients(reference):
    """The Mel loss's decoder mode runs decode_latent on expected latents: on the codes' own latent it must be
    decode, and it must carry gradients back to the latent."""
    _, folder = reference
    codec = pianogen.get_codec("encodec", checkpoint=str(folder), bandwidth=1.5)
    codes = codec.encode(torch.randn(1, 1, 4800) * 0.1)  # [1, 2, 20]
    books = codec.codebooks()  # [2, 1024, 128]
    latent = sum(books[k][codes[:, k]] for k in range(2)).transpose(1, 2).requires_grad_()  # [1, 128, 20]
    assert codec.decodes_latent and codec.decoder_context_frames() is None  # its LSTM sees the whole past
    audio = codec.decode_latent(latent)
    torch.testing.assert_close(audio.detach(), codec.decode(codes), atol=1e-5, rtol=0)
    audio.square().sum().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
