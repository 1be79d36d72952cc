"""The residual VQ of the SoundStream reference (vector-quantize-pytorch 1.6.11), on encodec's modules.

encodec's classes keep the buffer names our checkpoints and the import already use; three things
differ from the reference and are put right here:

1. Dead codes: encodec's ``replace_`` overwrites ``embed`` only, and the same forward then recomputes
   ``embed`` from the untouched ``embed_avg`` / ``cluster_size``, so an expired code never moves. The
   reference resets all three (usage to the threshold, running sum to threshold x the new vector),
   after the EMA update.
2. The residual: encodec subtracts the straight-through output ``x + (q - x).detach()``, whose
   gradient cancels that of ``x``, so levels 2.. pass nothing back and only level 1's commitment
   trains the encoder. The reference subtracts ``q.detach()``. Its sum of K straight-through
   outputs then hands the encoder K times the decoder's gradient; we pass it once, straight
   through the whole sum, as audiocraft does (its fix of encodec issue #25). Under Adam, which
   is blind to a common scale of a parameter's gradients, the reference's encoder update equals
   ours with the commitment weighted 1/K (``codec_train.commit_weight``) when K is fixed; with
   quantizer dropout K varies by step and the reference also rescales the step, which we do not.
3. Numerics: the quantizer runs in float32 even under autocast, as the reference does.

Under torch.distributed every rank adds the batch statistics of all ranks to its EMA (the
reference's ``sync_codebook``), so codebooks stay identical without broadcasting buffers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from encodec import distrib
from encodec.quantization.core_vq import (
    EuclideanCodebook,
    ResidualVectorQuantization,
    VectorQuantization,
    ema_inplace,
    laplace_smoothing,
    sample_vectors,
)
from torch import nn

# the reference's defaults (vector-quantize-pytorch 1.6.11 and haydenshively/SoundStream's ResidualVQ call)
REFERENCE_DECAY = 0.8
REFERENCE_KMEANS_ITERS = 100
REFERENCE_DEAD_CODE_THRESHOLD = 2.0


class ReferenceCodebook(EuclideanCodebook):
    """EMA codebook: quantize with the codebook as it was, then update it, then revive dead codes."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x = self.preprocess(x)  # [N, D]
        self.init_embed_(x)
        embed_ind = self.quantize(x)  # [N]
        quantize = self.dequantize(self.postprocess_emb(embed_ind, shape))  # [..., D]
        if self.training:
            onehot = F.one_hot(embed_ind, self.codebook_size).type(x.dtype)
            counts, embed_sum = onehot.sum(0), x.t() @ onehot  # [V], [D, V]
            distrib.all_reduce(counts)
            distrib.all_reduce(embed_sum)
            ema_inplace(self.cluster_size, counts, self.decay)
            ema_inplace(self.embed_avg, embed_sum.t(), self.decay)
            smoothed = laplace_smoothing(self.cluster_size, self.codebook_size, self.epsilon) * self.cluster_size.sum()
            self.embed.data.copy_(self.embed_avg / smoothed.unsqueeze(1))
            self.expire_codes_(x)  # replaces, then broadcasts rank 0's buffers so every rank agrees
        return quantize, self.postprocess_emb(embed_ind, shape)

    def replace_(self, samples: torch.Tensor, mask: torch.Tensor) -> None:
        """Move the codes in ``mask`` [V] to random batch vectors, with usage reset to the threshold."""
        sampled = sample_vectors(samples, int(mask.sum()))
        reset = float(self.threshold_ema_dead_code)
        self.embed.data[mask] = sampled
        self.cluster_size.data[mask] = reset
        self.embed_avg.data[mask] = sampled * reset


class ReferenceVectorQuantization(VectorQuantization):
    """encodec's single-level VQ (straight-through + commitment loss) over a ReferenceCodebook."""

    def __init__(self, *, dim: int, codebook_size: int, decay: float, kmeans_iters: int,
                 threshold_ema_dead_code: float):
        super().__init__(dim=dim, codebook_size=codebook_size, decay=decay, kmeans_init=True,
                         kmeans_iters=kmeans_iters, threshold_ema_dead_code=threshold_ema_dead_code)
        self._codebook = ReferenceCodebook(dim=dim, codebook_size=codebook_size, kmeans_init=True,
                                           kmeans_iters=kmeans_iters, decay=decay,
                                           threshold_ema_dead_code=threshold_ema_dead_code)


class ReferenceResidualVQ(ResidualVectorQuantization):
    """K levels; level k+1 quantizes the detached residual so each level's commitment reaches the encoder,
    and the decoder's gradient passes straight through the sum of the levels to the encoder, once."""

    def __init__(self, *, num_quantizers: int, **kwargs) -> None:
        nn.Module.__init__(self)
        self.layers = nn.ModuleList([ReferenceVectorQuantization(**kwargs) for _ in range(num_quantizers)])

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """latent [B, D, T] -> (quantized [B, D, T], codes [n_q, B, T], commitment losses [n_q, 1])."""
        with torch.autocast(x.device.type, enabled=False):
            residual, quantized_out = x.float(), 0.0
            losses, indices = [], []
            for layer in self.layers[: n_q or len(self.layers)]:
                quantized, codes, loss = layer(residual)
                quantized = quantized.detach()
                residual = residual - quantized
                quantized_out = quantized_out + quantized
                losses.append(loss)
                indices.append(codes)
            if self.training:
                quantized_out = x + (quantized_out - x).detach()
            return quantized_out, torch.stack(indices), torch.stack(losses)
