"""Answering a query: load it, (denoise it,) embed it, search FAISS, re-rank a compressed index's shortlist
with the stored vectors, and turn ids into results with their paths.

Constants (the figures behind them: docs/benchmarks.md section 7, edited copies and the calibrated copy score;
how they were chosen: docs/history/benchmarks-2026-11.md sections 11.12 and 12):

- ``QUERY_VIEWS``: the query views each ``views`` setting searches; "auto" only for a query that found no copy.
- ``FUSE_CANDIDATES``: candidates per channel a fixed-weight fused search re-scores.
- ``COPY_CANDIDATES``: candidates per channel a calibrated search scores.
- ``RANK_BY_COPY``: the copy score from which a candidate is ranked by it, ahead of those ranked by cosine.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypedDict, cast, overload

import numpy as np
from PIL import Image

from lookalike.indexer.loading import (DEFAULT_MAX_PIXELS, MAX_QUERY_BYTES, ImageLoadError, describe_path,
                                       image_from_array, load_image_and_hash, open_image_bytes, to_rgb)
from lookalike.indexer.signature import lowfreq_signature
from lookalike.errors import EngineError
from lookalike.indexer.store import MetadataStore, rows_of

from .calibration import CopyScorer, copy_label, load_scorer
from .denoise.base import DenoiseInfo
from .fusion import parse_lowfreq
from .maintainer import IndexMaintainer
from .options import SearchOptions

if TYPE_CHECKING:  # the denoisers load torch: imported where a query is denoised
    from .denoise import DenoiseResult

__all__ = ["Searcher", "SearchResult", "SearchResults", "SearchJSON", "HitJSON", "DenoiseJSON", "Candidates", "load_query",
           "QUERY_VIEWS", "VIEW_ALIASES", "view_image", "COPY_CANDIDATES"]


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
    copy_score: float | None = None  # calibrated probability that this image is a copy of the query (None: no scorer)
    match: str = "similar"           # "copy" at or above the scorer's threshold, else "similar"

    def to_dict(self) -> dict:
        return asdict(self)


class HitJSON(TypedDict):
    """One result as JSON: :class:`SearchResult`'s fields, the scores rounded to 6 decimals."""

    rank: int
    score: float
    path: str
    sha256: str
    width: int
    height: int
    id: int
    paths: list[str]
    copy_score: float | None
    match: str


class DenoiseJSON(DenoiseInfo):
    """How the query was denoised, as JSON, with the agreement of the denoised samples' neighbours."""

    consistency: float | None


class SearchJSON(TypedDict):
    """What ``lookalike search --json`` prints and ``POST /search`` returns (one shape, denoised or not)."""

    results: list[HitJSON]
    denoise: DenoiseJSON | None  # None: no denoising was asked for


@dataclass
class SearchResults:
    """Ranked results, plus how the query was treated (denoising) when it was."""

    results: list[SearchResult]
    query: str | None = None
    denoise: DenoiseResult | None = None  # how the query was denoised, when it was
    consistency: float | None = None  # agreement of the denoised samples' neighbours (0..1)
    lowfreq_weight: float = 0.0  # > 0: scores are (cosine + w * low-frequency cosine) / (1 + w)
    views: str = "none"          # the query views searched ("none", "mirror" or "mirror-turns"; "auto" resolves)
    threshold: float | None = None  # the copy score's "copy" line (None: the model has no calibrated score)
    background: float | None = None  # how close unrelated pictures come to the query: the mean cosine of its
    # calibration.BG_TOP nearest images of the scorer's background set (None: no scorer); a result below it is
    # no closer than an unrelated picture

    def __iter__(self) -> Iterator[SearchResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, i: int) -> SearchResult: ...

    @overload
    def __getitem__(self, i: slice) -> list[SearchResult]: ...

    def __getitem__(self, i: int | slice) -> SearchResult | list[SearchResult]:
        return self.results[i]

    def to_json(self) -> SearchJSON:
        """What ``lookalike search --json`` prints and ``POST /search`` returns: always ``{"results": [...],
        "denoise": ...}``, ``denoise`` None unless denoising was asked for."""
        hits = [cast(HitJSON, {**r.to_dict(), "score": round(r.score, 6),
                               "copy_score": None if r.copy_score is None else round(r.copy_score, 6)})
                for r in self.results]
        if self.denoise is None:
            return {"results": hits, "denoise": None}
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


# query views: flipped / turned copies of the query searched too, each image keeping its best score
_TURNS = ("mirror", "rot90", "rot180", "rot270")
QUERY_VIEWS = {"none": (), "mirror": ("mirror",), "mirror-turns": _TURNS, "auto": _TURNS}
VIEW_ALIASES = {"rot": "mirror-turns"}  # the old name, still accepted


def view_image(img: Image.Image, view: str) -> Image.Image:
    """One query view: "mirror" (left-right) or "rotN" (N degrees counter-clockwise, canvas expanded)."""
    from PIL import ImageOps

    return ImageOps.mirror(img) if view == "mirror" else img.rotate(int(view[3:]), expand=True)


FUSE_CANDIDATES = 200  # per channel, at least 4k: the union a fixed-weight fused search re-scores
COPY_CANDIDATES = 16   # per channel, at least k: the union a calibrated search scores
RANK_BY_COPY = 0.2     # copy score from which candidates rank by it; the rest keep the neural cosine's order


def _rank_key(copy_score: float, cos: float) -> tuple[bool, float]:
    """Sort key of a scored candidate: plausible copies first by copy score, then the rest by cosine."""
    return (copy_score < RANK_BY_COPY, -copy_score if copy_score >= RANK_BY_COPY else -cos)


def _checked(opts: SearchOptions) -> tuple[str, str | float]:
    """The options' query views (an old name resolved) and low-frequency setting; EngineError when one is bad."""
    if opts.k <= 0:
        raise EngineError(f"k must be positive, got {opts.k}")
    views = VIEW_ALIASES.get(opts.views, opts.views)
    if views not in QUERY_VIEWS:
        raise EngineError(f"views must be one of {', '.join(QUERY_VIEWS)}, got {opts.views!r}")
    try:
        return views, parse_lowfreq(opts.lowfreq)
    except (TypeError, ValueError) as exc:
        raise EngineError(str(exc)) from None


def _cut(results: list[SearchResult], opts: SearchOptions) -> list[SearchResult]:
    """The ``k`` best, without those under ``min_score`` (and those no copy with ``copies_only``), ranked 1..."""
    results = results[:opts.k]
    if opts.min_score is not None:
        results = [r for r in results if r.score >= opts.min_score]
    if opts.copies_only:
        results = [r for r in results if r.match == "copy"]
    return [replace(r, rank=i + 1) for i, r in enumerate(results)]


@dataclass
class Candidates:
    """One query's candidates from both channels: ids, neural cosines, low-frequency cosines, long sides."""

    ids: np.ndarray
    cos: np.ndarray
    low: np.ndarray
    sides: np.ndarray


class Searcher:
    """Queries against one index folder's store and FAISS index, embedded with ``embed``."""

    def __init__(self, store: MetadataStore, maintainer: IndexMaintainer,
                 embed: Callable[[Sequence[Image.Image]], np.ndarray], max_pixels: int = DEFAULT_MAX_PIXELS,
                 draft_size: Callable[[], int | None] | None = None, model: Callable[[], str] | None = None) -> None:
        self.store = store
        self.maintainer = maintainer
        self.embed = embed
        self.max_pixels = max_pixels
        self.draft_size = draft_size or (lambda: None)
        self._sig_cache: tuple[tuple, float, np.ndarray, np.ndarray] | None = None
        self._side_cache: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))  # with _sig_cache
        self.model = model  # the index's model name, for its copy scorer
        self._scorer: CopyScorer | None | bool = False

    def search(self, query: Any, options: SearchOptions | None = None) -> SearchResults:
        """The ``options.k`` indexed images most like ``query`` (see :meth:`lookalike.Engine.search`).

        Stages: options checked -> query read (and denoised) and embedded -> candidates ranked -> results cut."""
        opts = options or SearchOptions()
        views, lowfreq = _checked(opts)
        method = opts.denoise or "none"
        denoising = method != "none"  # the noise must reach the denoiser undiluted
        img, sha = load_query(query, self.max_pixels, draft_size=None if denoising else self.draft_size())
        q, den, consistency, weight = self._embed_query(img, opts, method)
        if lowfreq == "off":
            weight = 0.0
        elif lowfreq != "auto":
            weight = float(lowfreq)
        self_id = self.store.id_for_sha(sha) if (opts.exclude_self and sha) else None
        n = opts.k + (1 if self_id is not None else 0)
        scorer = self.scorer()
        searched = den.image if den is not None and den.method != "none" else img
        if scorer is not None and lowfreq == "auto" and weight == 0.0:
            results, views = self._rank_calibrated(q, searched, scorer, views, den is None, n, self_id)
        else:
            results, views = self._rank_plain(q, searched, scorer, views, weight, n, self_id)
        name = describe_path(query) if isinstance(query, (str, os.PathLike)) else None
        background = (float(scorer.background(q[None, :], lowfreq_signature(searched)[None, :])[0][0])
                      if scorer is not None else None)
        return SearchResults(results=_cut(results, opts), query=name, denoise=den, consistency=consistency,
                             lowfreq_weight=weight, views=views, threshold=scorer.threshold if scorer is not None else None,
                             background=background)

    def _embed_query(self, img: Image.Image, opts: SearchOptions,
                     method: str) -> tuple[np.ndarray, Any, float | None, float]:
        """The query's vector, its denoising (None without), the denoised samples' consistency and the
        low-frequency weight the denoiser asks for (0 without)."""
        if method == "none":
            return self.embed([img])[0], None, None, 0.0
        from .denoise import consistency_score, denoise_image

        den = denoise_image(img, method=method, sigma=opts.sigma, model=opts.denoise_model,
                            n_samples=opts.n_samples, photo_rule=True)
        samples = den.samples or [den.image]
        vecs = self.embed(samples)
        consistency = None
        if len(samples) > 1:
            per = [self.neighbours(v, opts.k) for v in vecs]
            consistency = consistency_score([[r.id for r in rs] for rs in per])
            q = vecs.mean(axis=0)
            q = q / max(float(np.linalg.norm(q)), 1e-12)
        else:
            q = vecs[0]
        return q, den, consistency, den.lowfreq_weight

    def _rank_calibrated(self, q: np.ndarray, img: Image.Image, scorer: CopyScorer, views: str, plain_query: bool,
                         n: int, self_id: int | None) -> tuple[list[SearchResult], str]:
        """Both channels ranked by the calibrated copy score (retrieval/calibration.py), the query's views merged;
        and the views searched ("auto" resolved)."""
        scored = self._calibrated(q, img, scorer, n, self_id)
        if views == "auto":  # turned views only for a (not denoised) query that found no copy
            views = "mirror-turns" if plain_query and not any(r.match == "copy" for r in scored) else "none"
        for im, v in zip(*self._views(img, views)):
            scored = _merge_best(scored, self._calibrated(v, im, scorer, n, self_id))
        return scored, views

    def _rank_plain(self, q: np.ndarray, img: Image.Image, scorer: CopyScorer | None, views: str, weight: float,
                    n: int, self_id: int | None) -> tuple[list[SearchResult], str]:
        """Ranked by the neural cosine (or fused at a fixed ``weight``), the query's views merged, labelled by the
        copy score where the model has one; and the views searched."""
        views = "none" if views == "auto" else views
        results = self._plain(q, img, weight, n, self_id)
        for im, v in zip(*self._views(img, views)):
            results = _merge_best(results, self._plain(v, im, weight, n, self_id), by="score")
        if scorer is not None:
            self._label(results, q, img, scorer)
        return results, views

    def _views(self, img: Image.Image, views: str) -> tuple[list[Image.Image], np.ndarray]:
        turned = [view_image(img, v) for v in QUERY_VIEWS[views]]
        return turned, (self.embed(turned) if turned else np.zeros((0, 0), np.float32))

    def _plain(self, q: np.ndarray, img: Image.Image, weight: float, n: int, self_id: int | None) -> list[SearchResult]:
        """Ranked by the neural cosine, or fused with the low-frequency channel at a fixed ``weight``."""
        if weight > 0:
            return self.fused_neighbours(q, lowfreq_signature(img), weight, n, exclude_id=self_id)
        return self.neighbours(q, n, exclude_id=self_id)

    def scorer(self) -> CopyScorer | None:
        """The index model's calibrated copy score (None when the model ships none)."""
        if self._scorer is False:
            self._scorer = load_scorer(self.model(), self.maintainer.dim) if self.model is not None else None
        return self._scorer  # type: ignore[return-value]

    def candidates(self, vector: np.ndarray, signature: np.ndarray, m: int = COPY_CANDIDATES,
                   exclude_id: int | None = None) -> Candidates:
        """The union of the ``m`` best images by the neural cosine and by the low-frequency cosine, each with both
        cosines (exact: the neural side re-scored with the stored vectors where the index compresses them)."""
        vector = np.asarray(vector, np.float32)
        pairs = self._neural_pairs(vector, m, exclude_id)
        cos = {i: s for s, i in pairs}
        sig_ids, sig_mat = self._signatures()
        # einsum, not BLAS: a BLAS product per query leaves its threads spinning, and the next inference and FAISS
        # search take twice as long on 2 cores
        low_all = (np.einsum("nd,d->n", sig_mat, np.asarray(signature, np.float32)) if len(sig_ids)
                   else np.zeros(0, np.float32))
        if len(low_all):
            top = np.argpartition(-low_all, min(m, len(low_all)) - 1)[:m] if len(low_all) > m else np.arange(len(low_all))
            extra = [int(sig_ids[j]) for j in top if int(sig_ids[j]) not in cos and int(sig_ids[j]) != exclude_id]
            for part_ids, vecs in self.store.iter_vectors(sorted(extra)) if extra else ():
                cos.update(zip(part_ids.tolist(), np.einsum("nd,d->n", vecs, vector).tolist()))
        side_ids, side_px = self._side_cache
        ids = np.fromiter(cos, np.int64, len(cos))
        sides = _gather(side_ids, side_px, ids)  # 0 for an image added since the cache was read
        low = _gather(sig_ids, low_all, ids).astype(np.float32)
        return Candidates(ids=ids, cos=np.asarray([cos[i] for i in ids.tolist()], np.float32), low=low, sides=sides)

    def _calibrated(self, q: np.ndarray, img: Image.Image, scorer: CopyScorer, n: int,
                    self_id: int | None) -> list[SearchResult]:
        """Candidates of both channels: the plausible copies (copy score >= RANK_BY_COPY) by copy score, then the
        rest by cosine (see RANK_BY_COPY)."""
        sig = lowfreq_signature(img)
        c = self.candidates(q, sig, max(COPY_CANDIDATES, n), exclude_id=self_id)
        if not len(c.ids):
            return []
        side = max(img.info.get("original_size", img.size))
        p = scorer.score(c.cos, c.low, scorer.context(q, sig, side, c.cos, c.low), c.sides)
        copy = p >= scorer.threshold
        order = sorted(range(len(c.ids)), key=lambda i: _rank_key(float(p[i]), float(c.cos[i])))[:n]
        out = self._results([(float(c.cos[i]), int(c.ids[i])) for i in order])  # paths of the n best only
        at = {int(c.ids[i]): i for i in order}
        for r in out:
            r.copy_score = float(p[at[r.id]])
            r.match = "copy" if copy[at[r.id]] else "similar"
        return out

    def _label(self, results: list[SearchResult], q: np.ndarray, img: Image.Image, scorer: CopyScorer) -> None:
        """Copy scores for results ranked another way (fixed fusion weight, denoised queries)."""
        if not results:
            return
        sig = lowfreq_signature(img)
        sig_ids, sig_mat = self._signatures()
        ids = np.asarray([r.id for r in results], np.int64)
        rows, has = rows_of(sig_ids, ids)
        low = np.where(has, np.einsum("nd,d->n", sig_mat[rows], sig) if len(sig_ids) else 0.0, 0.0)
        by_id: dict[int, float] = {}
        for part_ids, vecs in self.store.iter_vectors(ids.tolist()):
            by_id.update(zip(part_ids.tolist(), np.einsum("nd,d->n", vecs, q).tolist()))
        cos = np.asarray([by_id.get(i, 0.0) for i in ids.tolist()], np.float64)
        side = max(img.info.get("original_size", img.size))
        p = scorer.score(cos, low, scorer.context(q, sig, side, cos, low),
                         np.asarray([max(r.width, r.height) for r in results], np.float64))
        for r, pi in zip(results, p.tolist()):
            r.copy_score = pi
            r.match = copy_label(pi, scorer.threshold)

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
        return self._results(self._neural_pairs(np.asarray(vector, np.float32), k, exclude_id))

    def _neural_pairs(self, vector: np.ndarray, k: int, exclude_id: int | None = None) -> list[tuple[float, int]]:
        """(cosine, id) of the ``k`` nearest, re-ranked exactly for compressed indexes."""
        index = self.maintainer.index
        if index is None or len(index) == 0:
            return []
        refines = self.maintainer.refines()
        scores, ids = index.search(vector[None, :], k * self.maintainer.refine_factor() if refines else k)
        pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) != exclude_id]
        return self.rerank(pairs, vector, k) if refines else pairs

    def _signatures(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, (N, 63) matrix) of the stored low-frequency signatures, cached until images are added or
        removed (and for at most 5 minutes: another process may fill in an older index's signatures)."""
        index = self.maintainer.index
        key = (len(index) if index is not None else 0, self.store.max_image_id())
        now = time.monotonic()
        if self._sig_cache is None or self._sig_cache[0] != key or now - self._sig_cache[1] > 300:
            ids, mat = self.store.signatures()
            self._sig_cache = (key, now, ids, mat)
            self._side_cache = self.store.image_sides()
        return self._sig_cache[2], self._sig_cache[3]

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
            j, has = rows_of(sig_ids, part_ids)
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


def _gather(sorted_ids: np.ndarray, values: np.ndarray, wanted: np.ndarray, missing: float = 0.0) -> np.ndarray:
    """``values`` (one per sorted id) at each ``wanted`` id; ``missing`` where the id has none."""
    rows, present = rows_of(sorted_ids, wanted)
    return np.where(present, values[rows] if len(values) else missing, missing)


def _merge_best(a: list[SearchResult], b: list[SearchResult], by: str = "copy") -> list[SearchResult]:
    """One list from two result lists of the same query (views): each image keeps its best entry, ranked as
    :meth:`Searcher._calibrated` ranks (``by="copy"``) or by score."""
    best = {r.id: r for r in a}
    key = (lambda r: r.score) if by == "score" else (lambda r: (r.copy_score or 0.0))
    for r in b:
        if r.id not in best or key(r) > key(best[r.id]):
            best[r.id] = r
    if by == "score":
        return sorted(best.values(), key=lambda r: -r.score)
    return sorted(best.values(), key=lambda r: _rank_key(r.copy_score or 0.0, r.score))
