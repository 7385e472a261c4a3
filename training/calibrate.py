"""Fitting the calibrated copy score (retrieval/calibration.py): L2-regularised logistic regression (Newton steps,
numpy only), the F1-best "copy" threshold, the background set embedded by a model, leave-one-kind-out splits."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from lookalike.retrieval.calibration import CopyScorer

__all__ = ["fit_logistic", "best_threshold", "background_arrays", "make_scorer", "leave_one_kind_out"]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 30,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, std, coef, intercept) of a logistic regression of ``y`` (0/1) on standardised ``x``; ``l2`` is the
    penalty on the coefficients (not the intercept), ``weights`` per-row weights (default: classes balanced)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if weights is None:
        pos = max(float(y.sum()), 1.0)
        neg = max(float(len(y) - y.sum()), 1.0)
        weights = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 1e-6)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -60, 60)))
        g = z.T @ (weights * (p - y)) + reg * w
        h = (z * (weights * p * (1 - p))[:, None]).T @ z + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return mean, std, w[:-1], float(w[-1])


def best_threshold(p: np.ndarray, correct: np.ndarray, n_positive: int) -> float:
    """The copy-score threshold with the best F1 for per-query top-1 predictions: ``p`` the top-1 copy scores,
    ``correct`` whether each top-1 is the query's original, ``n_positive`` the queries that have one."""
    p = np.asarray(p, np.float64)
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(np.asarray(correct, bool)[order])
    taken = np.arange(1, len(p) + 1)
    f1 = 2 * hits / (taken + max(n_positive, 1))
    i = int(np.argmax(f1))
    below = p[order[i + 1]] if i + 1 < len(p) else 0.0
    return float((p[order[i]] + below) / 2)


def background_arrays(embed, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, signatures) of :func:`lookalike.data.photosets.background_set` under ``embed`` (images -> unit
    vectors)."""
    from lookalike.data.photosets import background_set
    from lookalike.indexer.signature import lowfreq_signature

    ims = [im for _, im in background_set(n)]
    vecs = np.concatenate([np.asarray(embed(ims[s:s + 64]), np.float32) for s in range(0, len(ims), 64)])
    sigs = np.stack([lowfreq_signature(im) for im in ims]).astype(np.float32)
    return vecs, sigs


def make_scorer(model: str, x: np.ndarray, y: np.ndarray, threshold: float, bg: tuple[np.ndarray, np.ndarray],
                l2: float = 1.0, info: dict | None = None) -> CopyScorer:
    """A :class:`CopyScorer` fitted on feature rows ``x`` with labels ``y``."""
    mean, std, coef, b = fit_logistic(x, y, l2)
    return CopyScorer(model=model, mean=mean, std=std, coef=coef, intercept=b, threshold=threshold,
                      bg_vectors=bg[0], bg_signatures=bg[1], info=info)


def leave_one_kind_out(kinds: Sequence[str], folds: Sequence[int],
                       n_folds: int = 2) -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
    """(held-out kind, held-out photo fold, train mask, test mask) over queries: train on the other kinds' other
    photo folds, test on the held-out kind's held-out fold (every query is tested once)."""
    kinds = np.asarray(kinds)
    folds = np.asarray(folds)
    for kind in dict.fromkeys(kinds.tolist()):
        for f in range(n_folds):
            yield kind, f, (kinds != kind) & (folds != f), (kinds == kind) & (folds == f)
