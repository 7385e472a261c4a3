"""Triplet margin loss over (anchor, positive, negative) index triplets chosen by a miner."""
from __future__ import annotations

import torch


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix (N, N), numerically safe at zero."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return torch.sqrt(sq.clamp_min(1e-12)) * (sq > 1e-12)


def all_triplets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every valid (a, p, n) index triplet in a batch: a != p same class, n other class."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye).unsqueeze(2) & (~same).unsqueeze(1)
    a, p, n = torch.where(valid)
    return a, p, n


class TripletMarginLoss(torch.nn.Module):
    """``max(0, d(a, p) - d(a, n) + margin)`` averaged over the given triplets (all valid ones if none given)."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.margin = float(margin)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor,
                triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Mean triplet loss; zero (with a gradient path) when there is no triplet."""
        a, p, n = triplets if triplets is not None else all_triplets(labels)
        if len(a) == 0:
            return emb.sum() * 0.0
        d_ap = torch.linalg.vector_norm(emb[a] - emb[p], dim=1)
        d_an = torch.linalg.vector_norm(emb[a] - emb[n], dim=1)
        return torch.clamp(d_ap - d_an + self.margin, min=0).mean()
