"""Answering a query: load it, (denoise it,) embed it, search FAISS, re-rank a compressed index's shortlist
with the stored vectors, and turn ids into results with their paths.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from lookalike.indexer.loading import (DEFAULT_MAX_PIXELS, MAX_QUERY_BYTES, ImageLoadError, describe_path,
                                       image_from_array, load_image_and_hash, open_image_bytes, to_rgb)
from lookalike.indexer.signature import lowfreq_signature, noise_level
from lookalike.indexer.store import MetadataStore

from .folder import EngineError
from .fusion import LOWDETAIL_MATCH, lowdetail_weight, parse_lowfreq
from .maintainer import IndexMaintainer

__all__ = ["Searcher", "SearchResult", "SearchResults", "load_query", "QUERY_VIEWS", "VIEWS_AUTO_MARGIN",
           "VIEWS_AUTO_MAX_NOISE", "view_image"]


@dataclass
class SearchResult:
    """One neighbour: an indexed image (all paths with that content are listed)."""

    rank: int
    score: float
    path: str
    sha256: str
    width: int
    height: int
    id: int
    paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResults:
    """Ranked results, plus how the query was treated (denoising) when it was."""

    results: list[SearchResult]
    query: str | None = None
    denoise: Any = None          # lookalike.retrieval.denoise.DenoiseResult when --denoise was used
    consistency: float | None = None  # agreement of the denoised samples' neighbours (0..1)
    lowfreq_weight: float = 0.0  # > 0: scores are (cosine + w * low-frequency cosine) / (1 + w)
    views: str = "none"          # the query views searched ("none", "mirror" or "rot"; "auto" resolves to one)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]

    def to_json(self) -> list[dict] | dict:
        """What ``lookalike search --json`` prints and ``POST /search`` returns: the hits, and how the query was
        denoised when it was."""
        hits = [{**r.to_dict(), "score": round(r.score, 6)} for r in self.results]
        if self.denoise is None:
            return hits
        return {"results": hits, "denoise": {**self.denoise.to_dict(), "consistency": self.consistency}}


def load_query(query: Any, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = MAX_QUERY_BYTES,
               draft_size: int | None = None) -> tuple[Image.Image, str | None]:
    """Turn a path, bytes, array or PIL image into an RGB image (and its sha256 when known).

    A path must name a regular file of at most ``max_bytes`` (pipes and devices are refused, never read).
    ``draft_size``: a JPEG file or upload is decoded at the smallest DCT scale still at least that large, as
    indexing decodes it (an 800x600 query then costs about half the decoding and a quarter of the resizing)."""
    try:
        if isinstance(query, Image.Image):
            if query.width <= 0 or query.height <= 0:
                raise ImageLoadError("query", f"invalid dimensions {query.width}x{query.height}")
            return to_rgb(query), None
        if isinstance(query, np.ndarray):
            return image_from_array(query, max_pixels=max_pixels), None
        if isinstance(query, (bytes, bytearray, memoryview)):
            data = bytes(query)
            if len(data) > max_bytes:
                raise ImageLoadError("query", f"too large ({len(data) / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB)")
            return open_image_bytes(data, max_pixels=max_pixels, draft_size=draft_size), hashlib.sha256(data).hexdigest()
        if not isinstance(query, (str, os.PathLike)):
            raise ImageLoadError("query", f"expected a path, bytes, a numpy array or a PIL image, not {type(query).__name__}")
        if not os.fspath(query):
            raise ImageLoadError("query", "empty path")
        return load_image_and_hash(query, max_pixels=max_pixels, max_bytes=max_bytes, draft_size=draft_size)
    except ImageLoadError as exc:
        name = describe_path(query) if isinstance(query, (str, os.PathLike)) and os.fspath(query) else "query"
        raise EngineError(f"{name}: {exc.reason}") from None


# query-time views: flipped / turned copies of the query searched too, each image scored by its best view;
# "auto" searches the "rot" views only for an undecided query (see VIEWS_AUTO_MARGIN)
_TURNS = ("mirror", "rot90", "rot180", "rot270")
QUERY_VIEWS = {"none": (), "mirror": ("mirror",), "rot": _TURNS, "auto": _TURNS}
# views="auto": a query searched with the neural score alone whose best two images score within this of each other
# is searched again mirrored and turned (the "rot" views). Chosen on the dev photos only, with heads trained without
# the held-out half of them (benchmarks/heldout_copies.py: 5 seeds x 2 folds, 720 edited copies; docs/benchmarks.md
# 11.12): misses 21.8 -> 18.2 (rotate and colour-shifted copies gain most), the views run for about 4% of the
# queries; margin 0.02 / 0.05 / 0.1 / always: 19.0 / 18.8 / 20.0 / 20.2 misses. Eval: top-1 0.978 -> 0.981.
VIEWS_AUTO_MARGIN = 0.03
# ... unless the query is noisy (indexer.signature.noise_level above this): noise, not a turn, makes such a query
# undecided. Dev (benchmarks/gated_lowfreq.py --gate noise): every clean photo <= 0.049 and 717 of 720 edited
# copies <= 0.05 (the undecided ones too); the undecided noisy ones > 0.09, Gaussian noise 0.25 and more >= 0.119.
# Noisy dev queries at 1 MP: 12 / 24 undecided ones found without views, 10 with them; 0.05-0.09 all give that,
# 0.07 is the middle. On eval the views then leave plain search of noisy photos exactly as it was.
VIEWS_AUTO_MAX_NOISE = 0.07
# a best score this high is the query's own picture (the same pixels; float rounding keeps it below 1): no views
EXACT_SCORE = 0.9999


def view_image(img: Image.Image, view: str) -> Image.Image:
    """One query view: "mirror" (left-right) or "rotN" (N degrees counter-clockwise, canvas expanded)."""
    from PIL import ImageOps

    return ImageOps.mirror(img) if view == "mirror" else img.rotate(int(view[3:]), expand=True)


# a fused search re-scores the union of this many neural and this many low-frequency candidates (at least 4k)
FUSE_CANDIDATES = 200


class Searcher:
    """Queries against one index folder's store and FAISS index, embedded with ``embed``."""

    def __init__(self, store: MetadataStore, maintainer: IndexMaintainer,
                 embed: Callable[[Sequence[Image.Image]], np.ndarray], max_pixels: int = DEFAULT_MAX_PIXELS,
                 draft_size: Callable[[], int | None] | None = None) -> None:
        self.store = store
        self.maintainer = maintainer
        self.embed = embed
        self.max_pixels = max_pixels
        self.draft_size = draft_size or (lambda: None)
        self._sig_cache: tuple[tuple, float, np.ndarray, np.ndarray] | None = None

    def search(self, query: Any, k: int = 10, min_score: float | None = None, exclude_self: bool = False,
               denoise: str | None = None, sigma: float | str = "auto", n_samples: int = 1,
               denoise_model: str | None = None, lowfreq: "str | float" = "auto",
               views: str = "auto") -> SearchResults:
        """The ``k`` indexed images most like ``query`` (see :meth:`lookalike.Engine.search`)."""
        if k <= 0:
            raise EngineError(f"k must be positive, got {k}")
        if views not in QUERY_VIEWS:
            raise EngineError(f"views must be one of {', '.join(QUERY_VIEWS)}, got {views!r}")
        try:
            lowfreq = parse_lowfreq(lowfreq)
        except (TypeError, ValueError) as exc:
            raise EngineError(str(exc)) from None
        denoising = bool(denoise and denoise != "none")  # the noise must reach the denoiser undiluted
        img, sha = load_query(query, self.max_pixels, draft_size=None if denoising else self.draft_size())
        den = None
        consistency = None
        weight = 0.0
        sig = None
        if denoise and denoise != "none":
            from .denoise import consistency_score, denoise_image

            den = denoise_image(img, method=denoise, sigma=sigma, model=denoise_model, n_samples=n_samples,
                                photo_rule=True)
            samples = den.samples or [den.image]
            vecs = self.embed(samples)
            if len(samples) > 1:
                per = [self.neighbours(v, k) for v in vecs]
                consistency = consistency_score([[r.id for r in rs] for rs in per])
                q = vecs.mean(axis=0)
                q = q / max(float(np.linalg.norm(q)), 1e-12)
            else:
                q = vecs[0]
            weight = den.lowfreq_weight
        else:
            q = self.embed([img])[0]
        if lowfreq == "off":
            weight = 0.0
        elif lowfreq != "auto":
            weight = float(lowfreq)
        elif weight == 0.0 and (den is None or den.method == "none"):
            weight = lowdetail_weight(img)
            # a low-detail query fuses only when the channel finds a near-exact match (retrieval/fusion.py)
            if weight > 0 and self.best_lowfreq_match(sig := lowfreq_signature(img)) < LOWDETAIL_MATCH:
                weight = 0.0
        self_id = self.store.id_for_sha(sha) if (exclude_self and sha) else None
        n = k + (1 if self_id is not None else 0)
        m = max(n, 2) if views == "auto" else n  # "auto" looks at the best two
        if weight > 0:
            results = self.fused_neighbours(q, sig if sig is not None else lowfreq_signature(img), weight, m,
                                            exclude_id=self_id)
        else:
            results = self.neighbours(q, m, exclude_id=self_id)
        if views == "auto":  # only an undecided query, never one fused with the low-frequency channel or denoised
            undecided = (weight == 0 and (den is None or den.method == "none") and len(results) >= 2
                         and results[0].score < EXACT_SCORE  # an indexed copy of the query itself: decided
                         and results[0].score - results[1].score < VIEWS_AUTO_MARGIN
                         and noise_level(img) <= VIEWS_AUTO_MAX_NOISE)
            views = "rot" if undecided else "none"
        if QUERY_VIEWS[views]:
            results = self._with_views(img, results, views, weight, n, self_id)
        results = results[:k]
        if min_score is not None:
            results = [r for r in results if r.score >= min_score]
        name = describe_path(query) if isinstance(query, (str, os.PathLike)) else None
        return SearchResults(results=results, query=name, denoise=den, consistency=consistency, lowfreq_weight=weight,
                             views=views)

    def _with_views(self, img: Image.Image, results: list[SearchResult], views: str, weight: float, n: int,
                    self_id: int | None) -> list[SearchResult]:
        """Merge the results of flipped / turned copies of the query (embedded in one batch): each image keeps its
        best score over the views."""
        turned = [view_image(img, v) for v in QUERY_VIEWS[views]]
        best = {r.id: r for r in results}
        for im, v in zip(turned, self.embed(turned)):
            found = (self.fused_neighbours(v, lowfreq_signature(im), weight, n, exclude_id=self_id) if weight > 0
                     else self.neighbours(v, n, exclude_id=self_id))
            for r in found:
                if r.id not in best or r.score > best[r.id].score:
                    best[r.id] = r
        merged = sorted(best.values(), key=lambda r: -r.score)
        return [SearchResult(**{**r.to_dict(), "rank": i + 1}) for i, r in enumerate(merged)]

    def search_vector(self, vector: Any, k: int = 10, min_score: float | None = None) -> SearchResults:
        """The ``k`` indexed images nearest an embedding (any length; it is normalised)."""
        if k <= 0:
            raise EngineError(f"k must be positive, got {k}")
        try:
            v = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise EngineError("vector: expected a list of numbers") from None
        dim = self.maintainer.dim
        if v.ndim != 1 or len(v) != dim:
            raise EngineError(f"vector has {v.size} values; this index holds {dim}-d vectors ({self.maintainer.config.model})")
        if not np.isfinite(v).all():
            raise EngineError("vector holds NaN or infinite values")
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            raise EngineError("vector is all zeros")
        results = self.neighbours(v / norm, k)
        if min_score is not None:
            results = [r for r in results if r.score >= min_score]
        return SearchResults(results=results)

    def neighbours(self, vector: np.ndarray, k: int, exclude_id: int | None = None) -> list[SearchResult]:
        """The ``k`` nearest indexed images of a unit vector, re-ranked exactly for compressed indexes."""
        index = self.maintainer.index
        if index is None or len(index) == 0:
            return []
        vector = np.asarray(vector, np.float32)
        refines = self.maintainer.refines()
        scores, ids = index.search(vector[None, :], k * self.maintainer.refine_factor() if refines else k)
        pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) != exclude_id]
        if refines:
            pairs = self.rerank(pairs, vector, k)
        return self._results(pairs)

    def _signatures(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, (N, 63) matrix) of the stored low-frequency signatures, cached until images are added or
        removed (and for at most 5 minutes: another process may fill in an older index's signatures)."""
        index = self.maintainer.index
        key = (len(index) if index is not None else 0, self.store.max_image_id())
        now = time.monotonic()
        if self._sig_cache is None or self._sig_cache[0] != key or now - self._sig_cache[1] > 300:
            ids, mat = self.store.signatures()
            self._sig_cache = (key, now, ids, mat)
        return self._sig_cache[2], self._sig_cache[3]

    def best_lowfreq_match(self, signature: np.ndarray) -> float:
        """The highest low-frequency cosine between ``signature`` and any stored signature (-1 when none is stored)."""
        sig_ids, sig_mat = self._signatures()
        if not len(sig_ids):
            return -1.0
        return float(np.max(sig_mat @ np.asarray(signature, np.float32)))

    def fused_neighbours(self, vector: np.ndarray, signature: np.ndarray, weight: float, k: int,
                         exclude_id: int | None = None) -> list[SearchResult]:
        """The ``k`` best images by (cosine + ``weight`` x low-frequency cosine) / (1 + weight).

        The union of the best FUSE_CANDIDATES by each channel is re-scored exactly (the neural side with the
        stored vectors); an image without a stored signature keeps its cosine as its score."""
        index = self.maintainer.index
        if index is None or len(index) == 0:
            return []
        m = max(FUSE_CANDIDATES, 4 * k)
        vector = np.asarray(vector, np.float32)
        _, ids = index.search(vector[None, :], min(m, len(index)))
        cand = {int(i) for i in ids[0] if i >= 0}
        sig_ids, sig_mat = self._signatures()
        low = sig_mat @ np.asarray(signature, np.float32) if len(sig_ids) else np.zeros(0, np.float32)
        if len(low):
            top = np.argpartition(-low, min(m, len(low)) - 1)[:m] if len(low) > m else np.arange(len(low))
            cand.update(int(sig_ids[j]) for j in top)
        cand.discard(exclude_id if exclude_id is not None else -1)
        scored: list[tuple[float, int]] = []
        for part_ids, vecs in self.store.iter_vectors(sorted(cand)):
            fused = vecs @ vector
            j = np.minimum(np.searchsorted(sig_ids, part_ids), max(len(sig_ids) - 1, 0))
            has = (sig_ids[j] == part_ids) if len(sig_ids) else np.zeros(len(part_ids), bool)
            fused[has] = (fused[has] + weight * low[j[has]]) / (1.0 + weight)
            scored.extend(zip(fused.tolist(), part_ids.tolist()))
        scored.sort(key=lambda p: -p[0])
        return self._results(scored[:k])

    def _results(self, pairs: list[tuple[float, int]]) -> list[SearchResult]:
        """(score, id) pairs as SearchResults with their paths (images deleted meanwhile are dropped)."""
        meta = self.store.lookup([i for _, i in pairs])
        out: list[SearchResult] = []
        for score, iid in pairs:
            info = meta.get(iid)
            if info is None or not info.paths:  # deleted by a concurrent writer since the index was read
                continue
            out.append(SearchResult(rank=len(out) + 1, score=score, path=info.paths[0], sha256=info.sha256,
                                    width=info.width, height=info.height, id=iid, paths=info.paths))
        return out

    def rerank(self, pairs: list[tuple[float, int]], vector: np.ndarray, k: int) -> list[tuple[float, int]]:
        """Re-rank (score, id) candidates by exact inner product with the vectors the store holds."""
        exact: list[tuple[float, int]] = []
        for ids, vecs in self.store.iter_vectors([i for _, i in pairs]):
            exact.extend(zip((vecs @ vector).tolist(), ids.tolist()))
        exact.sort(key=lambda p: -p[0])
        return [(float(sc), int(i)) for sc, i in exact[:k]]
