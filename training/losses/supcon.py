"""Supervised contrastive SupCon (Khosla et al. 2020); NT-Xent (SimCLR, Chen et al. 2020) is SupCon on view ids."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .tuples import Pairs, all_pairs


class SupConLoss(torch.nn.Module):
    """SupCon "L_out": for each anchor, mean over its positives of ``-log softmax`` over its positives and negatives.

    ``embeddings`` (M, D) holds every view of every image (normalised here). Without ``indices_tuple`` every
    same-label row is a positive and every other row a negative; with labels = image ids and two views per
    image this is exactly NT-Xent.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                indices_tuple: Pairs | None = None) -> torch.Tensor:
        a1, p, a2, n = indices_tuple if indices_tuple is not None else all_pairs(labels)
        z = F.normalize(embeddings.float(), dim=1)
        m = z.shape[0]
        pos = torch.zeros(m, m, dtype=torch.bool, device=z.device)
        pos[a1, p] = True
        scored = pos.clone()
        scored[a2, n] = True
        logits = (z @ z.T / self.temperature).masked_fill(~scored, float("-inf"))
        keep = pos.any(1)  # anchors with a positive
        if not keep.any():
            return z.sum() * 0.0
        logits, pos = logits[keep], pos[keep]
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return (-(log_prob.masked_fill(~pos, 0.0)).sum(1) / pos.sum(1)).mean()


NTXentLoss = SupConLoss  # the same loss: NT-Xent's labels are image ids, so a view's only positive is its twin
