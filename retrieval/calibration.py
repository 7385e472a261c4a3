"""The calibrated copy score: one probability-like number that says "this image is a copy of that one", the same
for search, duplicates, the UI and the HTTP API.

For a (query, candidate) pair it combines both channels, the neural cosine and the low-frequency signature cosine
(:mod:`lookalike.indexer.signature`), each also taken relative to how close the query sits to a fixed background
set of unrelated images (the SSCD paper's score normalisation: small grey digits sit at cosine 0.9 from each other,
so 0.9 means nothing for them), and the pair's smaller long side (thumbnails lean on the low-frequency channel).
Each cosine is also taken relative to how close the query sits to the indexed collection itself (the mean of its
:data:`DENS_K` best cosines in that channel after the :data:`DENS_SKIP` best, which may be its copies; the
background closeness standing in where the collection has fewer close images): a copy stands out from its neighbours, a digit among digits does not.
A logistic regression over :data:`FEATURES` turns them into a probability; :attr:`CopyScorer.threshold` is the
default "copy" line. A model's scorer ships as ``weights/copy-calibration-<model>.npz`` (coefficients, the
background set's vectors and signatures, the threshold), fitted by ``lookalike bench copies --suite augly --fit``
with every edit kind held out in turn (docs/benchmarks.md section 7). A model without one has no
copy score: search ranks by cosine and duplicates fall back to a cosine threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FEATURES", "CopyScorer", "QueryContext", "pair_features", "density", "density_rows", "scorer_path",
           "load_scorer", "BG_TOP", "DENS_K", "DENS_SKIP", "DENS_TOP", "copy_label"]

FEATURES = ("cos", "low", "cos_rel", "low_rel", "side", "low_x_side", "cos_x_side", "cos_x_low", "cos_dens",
            "low_dens", "cos_dens_x_side", "low_dens_x_side", "best_channel")
BG_TOP = 3  # the background closeness of an image: mean cosine of its BG_TOP nearest background images
DENS_K = 8  # the collection closeness of an image: mean cosine of its DENS_K nearest indexed images, per channel,
DENS_SKIP = 3  # ... after its DENS_SKIP nearest (which may be copies of it: a photo kept four times)
DENS_TOP = DENS_SKIP + DENS_K
SIDE_REF = 256.0  # px; the side feature is log2(side / SIDE_REF), clipped to [-3, 2]


def copy_label(p: float | None, threshold: float | None) -> str:
    """"copy" at or above the scorer's threshold, else "similar" (no score: "similar")."""
    return "copy" if p is not None and threshold is not None and p >= threshold else "similar"


@dataclass(frozen=True)
class QueryContext:
    """What the features need of one side of a pair: its background closeness in each channel and its long side."""

    bg_cos: float
    bg_low: float
    side: float
    dens_cos: float = 0.0
    dens_low: float = 0.0


def _side_feature(side: np.ndarray) -> np.ndarray:
    return np.clip(np.log2(np.maximum(np.asarray(side, np.float64), 1.0) / SIDE_REF), -3.0, 2.0)


def pair_features(cos: np.ndarray, low: np.ndarray, bg_cos: np.ndarray | float, bg_low: np.ndarray | float,
                  side: np.ndarray | float, dens_cos: np.ndarray | float = 0.0,
                  dens_low: np.ndarray | float = 0.0) -> np.ndarray:
    """(n, len(FEATURES)) float64 rows for n pairs; ``side`` is the pair's smaller long side in px, ``dens_*`` the
    query's collection closeness per channel (:func:`density`)."""
    cos = np.asarray(cos, np.float64)
    low = np.asarray(low, np.float64)
    s = np.broadcast_to(_side_feature(side), cos.shape)
    dc, dl = cos - dens_cos, low - dens_low
    return np.stack([cos, low, cos - bg_cos, low - bg_low, s, low * s, cos * s, cos * low, dc, dl, dc * s, dl * s,
                     np.maximum(cos, low)], axis=1)


def density_rows(top: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Per row of ``top`` (an image's best cosines in one channel, -inf padded): the mean of the DENS_SKIP+1-th to
    DENS_TOP-th largest of them and DENS_TOP copies of the row's ``floor`` (its background closeness in that
    channel), so a small collection is as close as the background set says."""
    top = np.asarray(top, np.float64)
    both = np.concatenate([top, np.repeat(np.asarray(floor, np.float64)[:, None], DENS_TOP, 1)], axis=1)
    return -np.sort(-both, axis=1)[:, DENS_SKIP:DENS_TOP].mean(axis=1)


def density(values: np.ndarray, floor: float) -> float:
    """:func:`density_rows` of one image's cosines."""
    return float(density_rows(np.asarray(values, np.float64).reshape(1, -1), np.asarray([floor]))[0])


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sims.shape[1])
    if k <= 0:
        return np.zeros(len(sims), np.float64)
    return np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1)


@dataclass
class CopyScorer:
    """A fitted copy score for one model: logistic regression on standardised :func:`pair_features`."""

    model: str
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    bg_vectors: np.ndarray      # (B, dim) unit vectors of the background set, float32
    bg_signatures: np.ndarray   # (B, 63) unit low-frequency signatures of the same images
    info: dict | None = None

    def background(self, vectors: np.ndarray, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bg_cos, bg_low) for rows of unit vectors and their signatures (float64 each, one per row)."""
        v = np.asarray(vectors, np.float32).reshape(-1, self.bg_vectors.shape[1])
        s = np.asarray(signatures, np.float32).reshape(-1, self.bg_signatures.shape[1])
        if len(v) <= 8:  # one query: einsum, not BLAS, whose spinning threads slow the next inference 2x
            return (_top_mean(np.einsum("qd,bd->qb", v, self.bg_vectors), BG_TOP),
                    _top_mean(np.einsum("qd,bd->qb", s, self.bg_signatures), BG_TOP))
        return _top_mean(v @ self.bg_vectors.T, BG_TOP), _top_mean(s @ self.bg_signatures.T, BG_TOP)

    def context(self, vector: np.ndarray, signature: np.ndarray, side: float, cand_cos: np.ndarray | None = None,
                cand_low: np.ndarray | None = None) -> QueryContext:
        """A query's :class:`QueryContext` (``cand_*``: its candidates' cosines, for the collection closeness)."""
        bc, bl = self.background(vector[None, :], signature[None, :])
        return QueryContext(float(bc[0]), float(bl[0]), float(side),
                            density(cand_cos if cand_cos is not None else [], bc[0]),
                            density(cand_low if cand_low is not None else [], bl[0]))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The calibrated log-odds of being a copy, one per feature row."""
        return np.einsum("nf,f->n", (np.asarray(features, np.float64) - self.mean) / self.std, self.coef) + self.intercept

    def probability(self, features: np.ndarray) -> np.ndarray:
        """The copy probability, one per feature row."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(features), -60, 60)))

    def score(self, cos: np.ndarray, low: np.ndarray, ctx: QueryContext, sides: np.ndarray | None = None) -> np.ndarray:
        """Copy probabilities of one query's candidates (``sides``: their long sides, else the query's)."""
        side = ctx.side if sides is None else np.minimum(np.asarray(sides, np.float64), ctx.side)
        return self.probability(pair_features(cos, low, ctx.bg_cos, ctx.bg_low, side, ctx.dens_cos, ctx.dens_low))

    def save(self, path: str | Path) -> Path:
        """Write the scorer (npz, atomically)."""
        import json

        from lookalike.fsutil import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, model=np.array(self.model), mean=self.mean, std=self.std, coef=self.coef,
                         intercept=np.array(self.intercept), threshold=np.array(self.threshold),
                         bg_vectors=self.bg_vectors.astype(np.float16),
                         bg_signatures=self.bg_signatures.astype(np.float16),
                         features=np.array(FEATURES), info=np.array(json.dumps(self.info or {})))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CopyScorer":
        """Read a scorer written by :meth:`save` (ValueError when it does not fit this release's features)."""
        import json

        with np.load(path, allow_pickle=False) as z:
            if tuple(str(f) for f in z["features"]) != FEATURES:
                raise ValueError(f"{path}: copy calibration for other features")
            bg = z["bg_vectors"].astype(np.float32)
            return cls(model=str(z["model"]), mean=z["mean"].astype(np.float64), std=z["std"].astype(np.float64),
                       coef=z["coef"].astype(np.float64), intercept=float(z["intercept"]),
                       threshold=float(z["threshold"]), bg_vectors=bg,
                       bg_signatures=z["bg_signatures"].astype(np.float32), info=json.loads(str(z["info"])))


def scorer_path(model: str) -> Path:
    """Where the shipped scorer of ``model`` lives (package data next to the checkpoints)."""
    from .models import MODELS_DIR

    return MODELS_DIR / f"copy-calibration-{model.replace('/', '_').replace(':', '_')}.npz"


_CACHE: dict[str, CopyScorer | None] = {}


def load_scorer(model: str, dim: int | None = None) -> CopyScorer | None:
    """The shipped scorer of ``model`` (None when it has none, or one for another vector size)."""
    if model not in _CACHE:
        p = scorer_path(model)
        try:
            _CACHE[model] = CopyScorer.load(p) if p.is_file() else None
        except (OSError, ValueError, KeyError):
            _CACHE[model] = None
    s = _CACHE[model]
    if s is not None and dim is not None and s.bg_vectors.shape[1] != dim:
        return None
    return s
