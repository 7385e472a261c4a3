"""Search latency (single query, p50/p95) and recall@10 against exact search, per index type and size.

    python -m benchmarks.search --sizes 10000 100000 --dim 1280 --types Flat HNSW32 IVF1024,Flat

Vectors are clustered synthetic unit vectors (like image embeddings: many tight groups); queries are
held-out points from the same clusters. Recall@10 is measured against exact inner-product search.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import faiss
import numpy as np

from benchmarks.synthetic import clustered_chunks

from lookalike.retrieval.index import VectorIndex, needs_training
from lookalike.retrieval.metrics import recall_at_k


def measure(factory: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int = 10,
            ef_search: int | None = None, nprobe: int | None = None) -> dict:
    dim = base.shape[1]
    t0 = time.perf_counter()
    train = base[: min(len(base), 100_000)] if needs_training(factory, dim) else None
    idx = VectorIndex.create(dim, factory, train_vectors=train)
    idx.add(np.arange(len(base), dtype=np.int64), base)
    build_s = time.perf_counter() - t0
    idx.set_params(ef_search=ef_search, nprobe=nprobe)
    faiss.omp_set_num_threads(1)  # a single query is answered on one thread
    for q in queries[:20]:
        idx.search(q[None], k)
    lat = []
    found = np.empty((len(queries), k), np.int64)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, ids = idx.search(q[None], k)
        lat.append((time.perf_counter() - t) * 1000)
        found[i] = ids[0]
    faiss.omp_set_num_threads(0 or 2)
    recall = recall_at_k(found, truth)
    return {"type": idx.factory + (f" ef{ef_search}" if ef_search else "") + (f" np{nprobe}" if nprobe else ""),
            "n": len(base), "dim": dim, "build_s": round(build_s, 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3), "recall_at_10": round(float(recall), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--types", nargs="+", default=["Flat", "HNSW32", "IVF1024,Flat"])
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rows = []
    for n in args.sizes:
        data = np.concatenate(list(clustered_chunks(n + args.queries, args.dim, n_clusters=max(10, n // 100), seed=n,
                                                    chunk=20_000)))
        base, queries = data[: n], data[n:]
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(base)
        _, truth = exact.search(queries, 10)
        for t in args.types:
            if t.startswith("HNSW"):
                for ef in args.ef:
                    rows.append(measure(t, base, queries, truth, ef_search=ef))
                    print(json.dumps(rows[-1]), file=sys.stderr)
            elif t.startswith("IVF"):
                for npb in args.nprobe:
                    rows.append(measure(t, base, queries, truth, nprobe=npb))
                    print(json.dumps(rows[-1]), file=sys.stderr)
            else:
                rows.append(measure(t, base, queries, truth))
                print(json.dumps(rows[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| vectors | dim | index | build s | p50 ms | p95 ms | recall@10 |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['n']:,} | {r['dim']} | {r['type']} | {r['build_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['recall_at_10']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
