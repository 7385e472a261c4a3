"""Search-knob tuning: the cheapest efSearch / nprobe / re-rank shortlist that reaches a recall target,
measured on the collection's own vectors against exact search.

The figures of benchmarks/ann.py show why a fixed setting is not enough: at 1M vectors HNSW32 needs
efSearch 32 on real-shaped embeddings (recall@10 0.993) but cannot reach 0.95 even at 512 on a hard,
low-contrast set, and a PQ index's recall after re-ranking depends on the shortlist length, not on nprobe.
So after a full build the engine samples stored vectors as queries, computes their exact top-k while the
vectors stream past (:class:`ExactTopK`), and sweeps the knobs (:func:`tune`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .index import VectorIndex
from .metrics import recall_at_k

__all__ = ["RECALL_TARGET", "TUNE_QUERIES", "ExactTopK", "TuneResult", "measure_recall", "tune"]

RECALL_TARGET = 0.95
TUNE_QUERIES = 200
EF_STEPS = (16, 32, 64, 128, 256, 512)
NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REFINE_STEPS = (10, 30, 100)


@dataclass
class TuneResult:
    """The chosen knobs and the recall@k they gave on the sample (``reached``: recall >= target)."""

    ef_search: int | None
    nprobe: int | None
    refine_factor: int | None
    recall_at_k: float
    reached: bool
    queries: int
    vectors: int
    target: float = RECALL_TARGET

    def to_dict(self) -> dict:
        return asdict(self)


class ExactTopK:
    """Exact top-k neighbours of fixed queries over vectors fed chunk by chunk (each query's own id excluded)."""

    def __init__(self, query_ids: np.ndarray, queries: np.ndarray, k: int = 10) -> None:
        self.query_ids = np.asarray(query_ids, np.int64)
        self.queries = np.ascontiguousarray(queries, np.float32)
        self.k = int(k)
        self.scores = np.full((len(self.queries), self.k), -np.inf, np.float32)
        self.ids = np.full((len(self.queries), self.k), -1, np.int64)
        self.seen = 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Merge one chunk of (ids, unit vectors) into the running top-k."""
        if len(ids) == 0 or len(self.queries) == 0:
            return
        ids = np.asarray(ids, np.int64)
        sc = self.queries @ np.asarray(vectors, np.float32).T
        sc[self.query_ids[:, None] == ids[None, :]] = -np.inf  # a query is not its own neighbour
        take = min(self.k, len(ids))
        part = np.argpartition(-sc, take - 1, axis=1)[:, :take]
        cs = np.concatenate([self.scores, np.take_along_axis(sc, part, 1)], 1)
        ci = np.concatenate([self.ids, ids[part]], 1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, : self.k]
        self.scores, self.ids = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
        self.seen += len(ids)


def measure_recall(index: VectorIndex, exact: ExactTopK, shortlist: int | None = None) -> float:
    """Recall@k of ``index`` against ``exact``; with ``shortlist`` the share of the true top-k found in the
    first ``shortlist`` candidates (what exact re-ranking of that shortlist then returns)."""
    n = shortlist or exact.k
    _, found = index.search(exact.queries, n + 1)
    cands = [[i for i in row.tolist() if i >= 0 and i != qid][:n] for qid, row in zip(exact.query_ids, found)]
    return recall_at_k(cands, exact.ids)


def tune(index: VectorIndex, exact: ExactTopK, refine: bool = False, target: float = RECALL_TARGET) -> TuneResult:
    """Set the cheapest knobs on ``index`` reaching ``target`` recall@k (the best found when none does).

    HNSW: smallest efSearch. IVF: smallest nprobe. Re-ranked (PQ) indexes: the shortest shortlist
    (k x refine factor) that can reach the target, with the smallest nprobe for it.
    """
    nq, nv = len(exact.queries), exact.seen
    nlist = index.nlist
    if "efSearch" in index.knobs:
        grid = [(ef, None) for ef in EF_STEPS]
    elif nlist:
        grid = [(None, p) for p in NPROBE_STEPS if p <= nlist] or [(None, nlist)]
    else:
        grid = [(None, None)]
    best: TuneResult | None = None
    for rf in REFINE_STEPS if refine else (None,):
        shortlist = exact.k * rf if rf else None
        for ef, npb in grid:
            index.set_params(ef_search=ef, nprobe=npb)
            r = measure_recall(index, exact, shortlist)
            res = TuneResult(ef, npb, rf, round(r, 4), r >= target, nq, nv, target)
            if best is None or r > best.recall_at_k:
                best = res
            if r >= target:
                return res  # the knobs just measured are left set
    assert best is not None
    index.set_params(ef_search=best.ef_search, nprobe=best.nprobe)
    return best
