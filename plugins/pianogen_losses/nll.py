"""Cross-entropy per RVQ level, averaged over levels: the report's NLL objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pianogen.interfaces import Loss


class NLLLoss(Loss):
    """Mean over levels of each level's mean next-code negative log-likelihood (nats), masked frames left out."""

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """logits [B, K, T, V], targets [B, K, T], mask [B, T] -> (loss, {"nll", "nll_l1", ..., "nll_lK"})."""
        B, K, T, V = logits.shape
        nll = F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), reduction="none").view(B, K, T)
        if mask is None:
            per_level = nll.mean(dim=(0, 2))  # [K]
        else:
            weight = mask[:, None, :].to(nll.dtype)  # [B, 1, T]
            per_level = (nll * weight).sum(dim=(0, 2)) / weight.sum(dim=(0, 2)).clamp_min(1.0)
        loss = per_level.mean()
        values = per_level.detach().tolist()  # one device sync for every metric
        return loss, {"nll": sum(values) / K, **{f"nll_l{k + 1}": v for k, v in enumerate(values)}}
