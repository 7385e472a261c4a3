"""Triplet margin loss over (anchor, positive, negative) index triplets chosen by a miner."""
from __future__ import annotations

import torch

from .tuples import Triplets, all_triplets


class TripletMarginLoss(torch.nn.Module):
    """``max(0, d(a, p) - d(a, n) + margin)`` averaged over the given triplets (all valid ones if none given)."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                indices_tuple: Triplets | None = None) -> torch.Tensor:
        """Mean triplet loss; zero (with a gradient path) when there is no triplet."""
        a, p, n = indices_tuple if indices_tuple is not None else all_triplets(labels)
        if len(a) == 0:
            return embeddings.sum() * 0.0
        d_ap = torch.linalg.vector_norm(embeddings[a] - embeddings[p], dim=1)
        d_an = torch.linalg.vector_norm(embeddings[a] - embeddings[n], dim=1)
        return torch.clamp(d_ap - d_an + self.margin, min=0).mean()
