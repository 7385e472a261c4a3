"""Miners choose indices tuples inside a batch for the losses (kept apart from them, as in pytorch-metric-learning):
pairs ``(a1, p, a2, n)`` for the contrastive loss, triplets ``(a, p, n)`` for the triplet loss."""
from __future__ import annotations

import inspect

import torch

from .losses.tuples import Pairs, Triplets, label_masks, pairwise_distances

__all__ = ["HalvesPairMiner", "BatchHardMiner", "SemiHardMiner", "get_miner", "MINERS"]


class HalvesPairMiner:
    """Row ``k`` of the batch's first half paired with row ``k`` of its second half; same label: a positive pair.

    For batches built as ``[x[i], x[j]]`` from drawn pairs ``(i, j)`` (``PairBatchSampler``).
    """

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Pairs:
        half = len(labels) // 2
        first = torch.arange(half, device=labels.device)
        same = labels[:half] == labels[half : 2 * half]
        return first[same], first[same] + half, first[~same], first[~same] + half


class BatchHardMiner:
    """For every anchor: its farthest positive and its nearest negative (Hermans et al. 2017)."""

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(embeddings)
            pos_mask, neg_mask = label_masks(labels)
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

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Triplets:
        with torch.no_grad():
            d = pairwise_distances(embeddings)
            pos_mask, neg_mask = label_masks(labels)
            a, p = torch.where(pos_mask)
            neg = neg_mask[a]                                # (P, N) candidate negatives per pair
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


def get_miner(name: str, **params) -> BatchHardMiner | SemiHardMiner:
    """A triplet miner from ``MINERS`` by name, given those of ``params`` (e.g. ``margin``) its constructor takes."""
    if name not in MINERS:
        raise ValueError(f"unknown mining '{name}' (choose {', '.join(MINERS)})")
    cls = MINERS[name]
    takes = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in params.items() if k in takes})
