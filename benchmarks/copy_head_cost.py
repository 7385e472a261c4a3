"""Per-query cost of the edit-robust head vs efficientnet_lite0 (interleaved, one thread) and of the low-detail
view's extra inner product. Run from the project root: OMP_NUM_THREADS=1 python -m benchmarks.copy_head_cost
"""
from __future__ import annotations

import time

import numpy as np
import torch

from lookalike import get_embedder
from lookalike.data.edits import apply_edit
from lookalike.data.photosets import eval_photos

if __name__ == "__main__":
    torch.set_num_threads(1)
    base = get_embedder("efficientnet_lite0")
    head = get_embedder("ntxent-copies")
    queries = [apply_edit(im, "crop", "mild", seed=i) for i, (_, im) in enumerate(eval_photos())] * 2
    gallery = np.random.default_rng(0).random((1515, head.dim), dtype=np.float32)
    base.embed_images(queries[:1]), head.embed_images(queries[:1])  # warm-up
    tb, th, tg = [], [], []
    for q in queries:
        t = time.perf_counter()
        base.embed_images([q])
        tb.append(time.perf_counter() - t)
        t = time.perf_counter()
        v = head.embed_images([q])[0]
        th.append(time.perf_counter() - t)
        t = time.perf_counter()
        gallery @ v
        tg.append(time.perf_counter() - t)
    print(f"{len(queries)} queries: lite0 embed median {np.median(tb) * 1000:.1f} ms, head embed median "
          f"{np.median(th) * 1000:.1f} ms, ratio {np.median(th) / np.median(tb):.2f}; extra low-detail product over "
          f"{gallery.shape[0]} x {gallery.shape[1]} median {np.median(tg) * 1000:.2f} ms")
