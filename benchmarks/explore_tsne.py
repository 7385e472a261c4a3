"""Explore page t-SNE time for 1,000 real embeddings (efficientnet_lite0, the duplicate benchmark's images):
the page's projection (openTSNE) against the scikit-learn call it replaced. Needs benchmarks/duplicates.py run first.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.explore_tsne
"""
import time

import numpy as np
from pathlib import Path
from lookalike.retrieval.engine import Engine
from lookalike.ui.explore_page import tsne_2d, pca_2d
from sklearn.manifold import TSNE
root = Path.home() / ".cache/lookalike-bench/duplicates"
parts = []
for s in ("dev", "eval"):
    with Engine.open(root / s / "index-efficientnet_lite0", create=False) as e:
        parts.append(e.vectors()[1])
v = np.concatenate(parts)[:1000]
for _ in range(2):
    t = time.perf_counter()
    tsne_2d(v)
    a = time.perf_counter() - t
    init = pca_2d(v)
    init = init / (init[:, 0].std() + 1e-12) * 1e-4
    t = time.perf_counter()
    TSNE(n_components=2, perplexity=30.0, init=init, random_state=0, max_iter=750).fit_transform(v)
    b = time.perf_counter() - t
    print(f"1000 points: openTSNE {a:.1f} s, scikit-learn (before) {b:.1f} s")
