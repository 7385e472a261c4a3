"""Contrastive loss with a margin (Hadsell, Chopra & LeCun 2006)."""
from __future__ import annotations

import torch


class ContrastiveLoss(torch.nn.Module):
    """``0.5 * d^2`` for same-class pairs, ``0.5 * max(0, margin - d)^2`` for different-class pairs, averaged.

    ``d`` is the Euclidean distance between the two embeddings of a pair.
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = float(margin)

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """Mean loss over pairs ``(emb_a[i], emb_b[i])``; ``same[i]`` is true for a same-class pair."""
        d = torch.linalg.vector_norm(emb_a - emb_b, dim=1)
        same = same.to(d.dtype)
        pos = same * d.pow(2)
        neg = (1.0 - same) * torch.clamp(self.margin - d, min=0).pow(2)
        return 0.5 * (pos + neg).mean()
