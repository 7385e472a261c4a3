"""Indices tuples shared by losses and miners: pairs ``(a1, p, a2, n)`` and triplets ``(a, p, n)`` of batch rows."""
from __future__ import annotations

import torch

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix (N, N), numerically safe at zero."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return torch.sqrt(sq.clamp_min(1e-12)) * (sq > 1e-12)


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) masks: positives (same label, not the row itself) and negatives (another label)."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def all_pairs(labels: torch.Tensor) -> Pairs:
    """Every ordered pair of distinct rows: ``(a1, p)`` same label, ``(a2, n)`` different labels."""
    pos, neg = label_masks(labels)
    a1, p = torch.where(pos)
    a2, n = torch.where(neg)
    return a1, p, a2, n


def all_triplets(labels: torch.Tensor) -> Triplets:
    """Every valid (a, p, n) index triplet in a batch: a != p same label, n another label."""
    pos, neg = label_masks(labels)
    a, p, n = torch.where(pos.unsqueeze(2) & neg.unsqueeze(1))
    return a, p, n
