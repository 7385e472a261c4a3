"""The pair search of ``lookalike duplicates`` above EXACT_MAX: its hand-rolled IVF range search
(``retrieval/duplicates.py`` ``candidate_pairs``) against faiss's own ``IndexIVFFlat.range_search`` on the same cells.

Both use the same spherical k-means cells (``cell_count(n)`` lists, trained on the same sample) and the same
``NPROBE``: every vector is compared with the vectors whose nearest cell is one of its ``NPROBE`` nearest, so
both should return the same pairs; the figure is the time. Vectors as ``benchmarks/duplicates.py --scale``
makes them: 1280-d, around 1,000 centres, a tenth of them near-copies (cosine ~0.95) of others.

    python -m benchmarks.dup_edges --n 100000 [--out benchmarks/results/dup-edges.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import faiss
import numpy as np

from lookalike.retrieval.duplicates import DEFAULT_THRESHOLD, EPS, NPROBE, cell_count, candidate_pairs


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors, the last tenth of every 5,000 near-copies of earlier ones (as duplicates.py)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 5000):
        m = min(5000, n - s)
        x = centres[rng.integers(0, 1000, m)] + rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        first = m - m // 10
        src = rng.integers(0, first, m - first)
        x[first:] = x[src] + rng.standard_normal((m - first, dim)).astype(np.float32) * (0.3 / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + m] = x
    return out


def faiss_pairs(vecs: np.ndarray, threshold: float, nlist: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs through ``IndexIVFFlat.range_search`` (cells trained exactly as ``_edges`` trains them)."""
    n, dim = vecs.shape
    rng = np.random.default_rng(0)
    sample = vecs[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
    km = faiss.Kmeans(dim, nlist, niter=10, seed=0, spherical=True)
    km.train(np.ascontiguousarray(sample))
    index = faiss.IndexIVFFlat(km.index, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.add(vecs)
    index.nprobe = nprobe
    rows, cols = [], []
    for s in range(0, n, 8192):
        lims, _, ids = index.range_search(vecs[s:s + 8192], threshold)
        a = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = a != ids
        rows.append(a[keep].astype(np.int32))
        cols.append(ids[keep].astype(np.int32))
    return np.concatenate(rows), np.concatenate(cols)


def unordered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each pair once, as the int64 key lo * 2^32 + hi."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return np.unique(lo << 32 | hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each (the best is kept)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    vecs = vectors(args.n, args.dim)
    nlist, nprobe = cell_count(args.n), min(NPROBE, cell_count(args.n))
    floor = args.threshold - EPS
    res: dict = {"n": args.n, "dim": args.dim, "threshold": args.threshold, "nlist": nlist, "nprobe": nprobe,
                 "cpu_count": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads()}
    for name, run in (("hand-rolled candidate_pairs", lambda: candidate_pairs(vecs, args.threshold, None, NPROBE)[:2]),
                      ("faiss range_search", lambda: faiss_pairs(vecs, floor, nlist, nprobe))):
        best = float("inf")
        for _ in range(args.runs):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            a, b = run()
            best = min(best, time.perf_counter() - t0)
        keys = unordered(a, b)
        res[name] = {"seconds": round(best, 2), "pairs": int(len(keys)), "load_avg_1m": round(load, 1)}
        res.setdefault("_keys", []).append(keys)
    k1, k2 = res.pop("_keys")
    res["same_pairs"] = bool(len(k1) == len(k2) and np.array_equal(k1, k2))
    res["only_hand_rolled"], res["only_faiss"] = int(len(np.setdiff1d(k1, k2))), int(len(np.setdiff1d(k2, k1)))
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
