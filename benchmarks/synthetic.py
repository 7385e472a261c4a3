"""Synthetic vectors for the search benchmarks: clustered unit vectors, like image embeddings (many tight groups)."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def clustered_chunks(n: int, dim: int, n_clusters: int, seed: int, spread: float = 1.0,
                     chunk: int = 50_000) -> Iterator[np.ndarray]:
    """n float32 unit vectors scattered around random cluster centres, ``chunk`` rows at a time (never held whole).

    The vectors depend on ``chunk`` (the order of the random draws): keep it to reproduce earlier figures.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        lab = rng.integers(0, n_clusters, m)
        x = centres[lab] + rng.standard_normal((m, dim)).astype(np.float32) * (spread / np.sqrt(dim))  # float64
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x.astype(np.float32)
