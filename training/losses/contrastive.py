"""Contrastive loss with a margin (Hadsell, Chopra & LeCun 2006)."""
from __future__ import annotations

import torch

from .tuples import Pairs, all_pairs


class ContrastiveLoss(torch.nn.Module):
    """``0.5 * d^2`` for positive pairs, ``0.5 * max(0, margin - d)^2`` for negative pairs, averaged over all pairs.

    ``d`` is the Euclidean distance between the two embeddings of a pair.
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                indices_tuple: Pairs | None = None) -> torch.Tensor:
        """Mean loss over the pairs ``(a1, p, a2, n)`` (every pair of the batch if none given); zero without pairs."""
        a1, p, a2, n = indices_tuple if indices_tuple is not None else all_pairs(labels)
        if len(a1) + len(a2) == 0:
            return embeddings.sum() * 0.0
        d_pos = torch.linalg.vector_norm(embeddings[a1] - embeddings[p], dim=1)
        d_neg = torch.linalg.vector_norm(embeddings[a2] - embeddings[n], dim=1)
        terms = torch.cat([d_pos.pow(2), torch.clamp(self.margin - d_neg, min=0).pow(2)])
        return 0.5 * terms.mean()
