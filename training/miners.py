"""Online triplet mining inside a batch: batch-hard and semi-hard (kept apart from the loss)."""
from __future__ import annotations

import torch

from .losses.triplet import pairwise_distances

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

__all__ = ["BatchHardMiner", "SemiHardMiner", "get_miner", "MINERS"]


class BatchHardMiner:
    """For every anchor: its farthest positive and its nearest negative (Hermans et al. 2017)."""

    def __call__(self, emb: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(emb)
            same = labels.unsqueeze(0) == labels.unsqueeze(1)
            eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
            pos_mask, neg_mask = same & ~eye, ~same
            ok = pos_mask.any(1) & neg_mask.any(1)
            hardest_pos = d.masked_fill(~pos_mask, float("-inf")).argmax(1)
            hardest_neg = d.masked_fill(~neg_mask, float("inf")).argmin(1)
            a = torch.nonzero(ok).flatten()
        return a, hardest_pos[a], hardest_neg[a]


class SemiHardMiner:
    """For every positive pair (a, p): the nearest negative farther than p, ``d(a,p) < d(a,n) < d(a,p) + margin``.

    As in FaceNet / TensorFlow's semi-hard loss: when no negative lies in that band, the nearest negative
    farther than p is used, and if none is farther, the farthest negative.
    """

    def __init__(self, margin: float = 0.2) -> None:
        self.margin = float(margin)

    def __call__(self, emb: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(emb)
            same = labels.unsqueeze(0) == labels.unsqueeze(1)
            eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
            a, p = torch.where(same & ~eye)
            neg = ~same[a]                                   # (P, N) candidate negatives per pair
            d_an = d[a]                                      # (P, N)
            d_ap = d[a, p].unsqueeze(1)
            farther = neg & (d_an > d_ap)
            nearest_farther = d_an.masked_fill(~farther, float("inf")).argmin(1)
            farthest = d_an.masked_fill(~neg, float("-inf")).argmax(1)
            has_farther = farther.any(1)
            n = torch.where(has_farther, nearest_farther, farthest)
            ok = neg.any(1)
        return a[ok], p[ok], n[ok]


MINERS = {"batch-hard": BatchHardMiner, "semi-hard": SemiHardMiner}


def get_miner(name: str, margin: float = 0.2):
    """A miner by name: ``batch-hard`` or ``semi-hard``."""
    if name == "batch-hard":
        return BatchHardMiner()
    if name == "semi-hard":
        return SemiHardMiner(margin)
    raise ValueError(f"unknown mining '{name}' (choose {', '.join(MINERS)})")
