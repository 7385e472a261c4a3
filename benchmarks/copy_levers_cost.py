"""Per-query cost of the copy levers on the default runtime, interleaved on one thread: a plain query (one
embedding, one product over the gallery), + the low-detail gallery view (one more product), + the mirror query
view (one more embedding, batched with the query), + every quarter-turn query view (four more embeddings).
Dev photos only. Run from the project root: OMP_NUM_THREADS=1 python -m benchmarks.copy_levers_cost
"""
from __future__ import annotations

import time

import numpy as np
from PIL import ImageOps

from lookalike.data.edits import EDITS, apply_edit
from lookalike.data.photosets import dev_photos
from lookalike.retrieval.models import DEFAULT_EMBEDDER
from lookalike.retrieval.runtime import load_embedder


def _top(score: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-score, kind="stable")[:k]


if __name__ == "__main__":
    emb = load_embedder(DEFAULT_EMBEDDER)  # auto: OpenVINO when it works here, as a search runs it
    edits = list(EDITS)
    queries = [apply_edit(im, edits[i % len(edits)], "strong" if i % 2 else "mild", seed=i)
               for i, (_, im) in enumerate(dev_photos(1024)[:12])] * 3
    rng = np.random.default_rng(0)
    g, gld = (rng.random((1530, emb.dim), dtype=np.float32) for _ in range(2))
    emb.embed_images(queries[:2])  # warm-up
    def plain(q):
        _top(g @ emb.embed_images([q])[0])

    def lowdetail(q):
        v = emb.embed_images([q])[0]
        _top(np.maximum(g @ v, gld @ v))

    def mirror(q):
        vv = emb.embed_images([q, ImageOps.mirror(q)])
        _top(np.maximum(g @ vv.T, gld @ vv.T).max(axis=1))

    def rot(q):
        vv = emb.embed_images([q, ImageOps.mirror(q), *(q.rotate(a, expand=True) for a in (90, 180, 270))])
        _top(np.maximum(g @ vv.T, gld @ vv.T).max(axis=1))

    methods = {"plain": plain, "+lowdetail": lowdetail, "+lowdetail+views:mirror": mirror, "+lowdetail+views:rot": rot}
    t: dict[str, list[float]] = {n: [] for n in methods}
    names = list(methods)
    for i, q in enumerate(queries):
        for name in names[i % len(names):] + names[:i % len(names)]:  # each method in every position in turn
            t0 = time.perf_counter()
            methods[name](q)
            t[name].append(time.perf_counter() - t0)
    base = np.median(t["plain"])
    print(f"{len(queries)} dev queries, {DEFAULT_EMBEDDER} on {getattr(emb, 'runtime', 'torch')}, gallery "
          f"{g.shape[0]} x {g.shape[1]}; median ms per query (x plain):")
    for name, ts in t.items():
        print(f"  {name:<26} {np.median(ts) * 1000:7.1f} ms  {np.median(ts) / base:.2f}x")
