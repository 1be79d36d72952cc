"""The SoundStream RVQ trains like the reference's (vector-quantize-pytorch 1.6.11 ResidualVQ).

The first two tests pin the two bugs of encodec's RVQ as we used it: dead codes that never moved,
and levels 2.. whose commitment never reached the encoder. The third runs the reference library
itself step by step beside ours.
"""

from __future__ import annotations

import pytest
import torch
from pianogen_soundstream.model import SoundStreamConfig
from pianogen_soundstream.rvq import ReferenceCodebook, ReferenceResidualVQ

import pianogen

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dead_codes_move_to_batch_vectors_for_good():
    torch.manual_seed(0)
    book = ReferenceCodebook(dim=4, codebook_size=16, kmeans_init=True, kmeans_iters=10, decay=0.8,
                             threshold_ema_dead_code=2.0).train()
    data = torch.randn(256, 4)
    book(data)  # k-means initialisation + one EMA step
    dead = torch.tensor([1, 5, 9, 13])
    book.embed.data[dead] = 100.0  # far from every input: no vector picks them, so they expire
    book.embed_avg.data[dead] = 100.0 * book.cluster_size[dead, None]
    book.cluster_size.data[dead] = 0.0
    book(data)
    revived = book.embed[dead]
    assert revived.abs().max() < 10  # encodec's replace_ left them at 99.99
    # each revived code is one of the batch vectors, and its running sums agree with it
    assert all(bool((data == row).all(-1).any()) for row in revived)
    torch.testing.assert_close(book.cluster_size[dead], torch.full((4,), 2.0))
    torch.testing.assert_close(book.embed_avg[dead], revived * 2.0)
    # and the next update keeps them near the data instead of pulling them back to 100
    book(data)
    assert book.embed[dead].abs().max() < 10


def test_every_level_commitment_reaches_the_encoder():
    torch.manual_seed(0)
    codec = pianogen.get_codec("soundstream", sample_rate=8000, channels=4, dim=16, strides=[2, 4, 5], n_levels=3,
                               codebook_size=16, kmeans_iters=5)
    wav = torch.randn(2, 1, 4000)
    codec.init_codebooks(wav)
    latent = codec._latent(wav).detach().requires_grad_(True)
    _, _, losses = codec.quantizer.train()(latent)
    for level, loss in enumerate(losses):
        (grad,) = torch.autograd.grad(loss.sum(), latent, retain_graph=True)
        assert grad.abs().sum() > 0, f"level {level + 1}'s commitment does not reach the encoder"
    # the decoder's gradient still flows straight through every level to the encoder
    quantized, _, _ = codec.quantizer(latent)
    (grad,) = torch.autograd.grad(quantized.sum(), latent)
    torch.testing.assert_close(grad, torch.ones_like(grad))


def test_defaults_are_the_reference_ones():
    sound = pytest.importorskip("soundstream.soundstream")
    ref_book = sound.SoundStream(n_q=2, codebook_size=8, D=4, C=2, strides=(2, 2, 2, 2)).quantizer.layers[0]._codebook
    cfg = SoundStreamConfig()
    assert (cfg.ema_decay, cfg.kmeans_iters, cfg.dead_code_threshold) == (
        ref_book.decay, ref_book.kmeans_iters, ref_book.threshold_ema_dead_code)


def test_training_steps_match_the_reference_library():
    """Same seed, same batches: codes, outputs, commitment losses and their input gradients and all codebook
    buffers agree with vector-quantize-pytorch 1.6.11 over k-means init, EMA updates and dead-code resets.
    (The decoder's gradient differs on purpose: the reference passes it n_q times, we pass it once.)"""
    vq = pytest.importorskip("vector_quantize_pytorch")
    n_q, dim, size = 3, 8, 32
    ref = vq.ResidualVQ(num_quantizers=n_q, dim=dim, codebook_size=size, kmeans_init=True, kmeans_iters=100,
                        threshold_ema_dead_code=2).train()
    ours = ReferenceResidualVQ(num_quantizers=n_q, dim=dim, codebook_size=size, decay=0.8, kmeans_iters=100,
                               threshold_ema_dead_code=2.0).train()
    batches = torch.randn(6, 2, 40, dim, generator=torch.Generator().manual_seed(1))  # [step, B, T, D]
    batches[3:, :, :20] *= 3  # the distribution moves, so some codes die and get replaced
    replaced = 0
    for batch in batches:
        x_ref, x_ours = batch.clone().requires_grad_(True), batch.transpose(1, 2).clone().requires_grad_(True)
        torch.manual_seed(7)
        q_ref, codes_ref, loss_ref = ref(x_ref)
        torch.manual_seed(7)
        q_ours, codes_ours, loss_ours = ours(x_ours)
        assert torch.equal(codes_ours.permute(1, 2, 0), codes_ref)
        torch.testing.assert_close(q_ours.transpose(1, 2), q_ref)
        torch.testing.assert_close(loss_ours.flatten(), loss_ref.flatten())
        (g_ref,) = torch.autograd.grad(loss_ref.sum(), x_ref)
        (g_ours,) = torch.autograd.grad(loss_ours.sum(), x_ours)
        torch.testing.assert_close(g_ours.transpose(1, 2), g_ref)
        for layer_ref, layer_ours in zip(ref.layers, ours.layers):
            a, b = layer_ref._codebook, layer_ours._codebook
            replaced += int((b.cluster_size == 2.0).sum())
            for name in ("embed", "embed_avg", "cluster_size"):
                torch.testing.assert_close(getattr(b, name), getattr(a, name)[0], msg=name)
    assert replaced > 0  # dead-code resets did happen and matched
