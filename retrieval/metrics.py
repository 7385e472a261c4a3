"""Retrieval accuracy: one calculator (precision@k, mAP@R, mAP; ANN recall@k against exact search) used by
training, eval, tuning and benchmarks."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["RetrievalMetrics", "retrieval_metrics", "knn", "precision_at_k", "map_at_r", "recall_at_k"]


@dataclass
class RetrievalMetrics:
    """Accuracy of label retrieval: queries against a gallery, ranked by cosine similarity."""

    map_at_r: float
    map: float
    p_at_1: float
    p_at_10: float
    n_queries: int
    n_gallery: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"mAP@R {self.map_at_r:.4f}  mAP {self.map:.4f}  P@1 {self.p_at_1:.4f}  "
                f"P@10 {self.p_at_10:.4f}  ({self.n_queries} queries, {self.n_gallery} gallery)")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def knn(queries: np.ndarray, gallery: np.ndarray, k: int | None = None, exclude_self: bool = False,
        chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN: (scores, indices) sorted best first; ``k=None`` ranks the whole gallery."""
    q, g = _unit(queries), _unit(gallery)
    k = g.shape[0] - (1 if exclude_self else 0) if k is None else k
    all_s, all_i = [], []
    for s in range(0, q.shape[0], chunk):
        sims = q[s : s + chunk] @ g.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + s] = -np.inf
        if k < g.shape[0]:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
            idx = np.take_along_axis(part, order, axis=1)
        else:
            idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        all_i.append(idx)
        all_s.append(np.take_along_axis(sims, idx, axis=1))
    return np.concatenate(all_s), np.concatenate(all_i)


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Mean share of relevant items among the first k (``relevant`` is a ranked boolean matrix)."""
    return float(relevant[:, :k].mean()) if relevant.size else 0.0


def recall_at_k(found: Iterable[Iterable[int]], truth: Iterable[Iterable[int]]) -> float:
    """ANN recall: the share of the true neighbours (rows of ``truth``) that the rows of ``found`` contain, over all
    queries; ids below 0 are padding. 1.0 when there is no true neighbour."""
    hits = total = 0
    for f, t in zip(found, truth):
        t = {int(i) for i in t if i >= 0}
        hits += len(t.intersection(int(i) for i in f))
        total += len(t)
    return hits / total if total else 1.0


def map_at_r(relevant: np.ndarray, n_relevant: np.ndarray) -> float:
    """mAP@R (Musgrave et al. 2020): average precision over the first R results, R = number of relevant items."""
    scores = []
    for row, r in zip(relevant, n_relevant):
        r = int(r)
        if r == 0:
            continue
        hits = row[:r].astype(np.float64)
        prec = np.cumsum(hits) / np.arange(1, r + 1)
        scores.append(float((prec * hits).sum() / r))
    return float(np.mean(scores)) if scores else 0.0


def _mean_ap(relevant: np.ndarray, n_relevant: np.ndarray) -> float:
    scores = []
    for row, r in zip(relevant, n_relevant):
        if r == 0:
            continue
        hits = row.astype(np.float64)
        prec = np.cumsum(hits) / np.arange(1, hits.shape[0] + 1)
        scores.append(float((prec * hits).sum() / r))
    return float(np.mean(scores)) if scores else 0.0


def retrieval_metrics(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray | None = None,
                      gallery_labels: np.ndarray | None = None) -> RetrievalMetrics:
    """Rank the gallery for each query and score label agreement.

    Without a gallery, the queries are their own gallery (leave-one-out).
    """
    query_labels = np.asarray(query_labels)
    self_gallery = gallery_emb is None
    if self_gallery:
        gallery_emb, gallery_labels = query_emb, query_labels
    gallery_labels = np.asarray(gallery_labels)
    _, idx = knn(query_emb, gallery_emb, k=None, exclude_self=self_gallery)
    relevant = gallery_labels[idx] == query_labels[:, None]
    counts = {lab: int(c) for lab, c in zip(*np.unique(gallery_labels, return_counts=True))}
    n_rel = np.array([counts.get(lab, 0) - (1 if self_gallery else 0) for lab in query_labels])
    return RetrievalMetrics(
        map_at_r=map_at_r(relevant, n_rel),
        map=_mean_ap(relevant, n_rel),
        p_at_1=precision_at_k(relevant, 1),
        p_at_10=precision_at_k(relevant, 10),
        n_queries=int(len(query_labels)),
        n_gallery=int(len(gallery_labels)),
    )
