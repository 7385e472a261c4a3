"""FAISS vector index named by a factory string ("Flat", "HNSW32", "IVF1024,PQ32"), with stable ids.

Vectors are unit length and compared by inner product (cosine). Ids are the metadata store's image ids,
kept by ``IndexIDMap2``. Index types that cannot delete (HNSW) hide removed ids from results until the
next rebuild. Files are written atomically.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import faiss
import numpy as np
from faiss.contrib.factory_tools import get_code_size

from lookalike.errors import LookalikeError
from lookalike.fsutil import atomic_path

__all__ = ["VectorIndex", "VectorIndexError", "choose_index_type", "estimate_bytes", "resolve_factory", "needs_training", "min_training_vectors"]

# a search of at most this many query-vector pairs runs on one OpenMP thread: waking a second one costs more than it
# saves there, and on a busy 2-core machine it waits a whole time slice (one query over 2,000 vectors: 16 ms on two
# threads, 0.15 ms on one; docs/benchmarks.md, "web UI")
ONE_THREAD_PAIRS = 100_000


@contextlib.contextmanager
def _threads_for(pairs: int):
    """One OpenMP thread for a small search, the configured number otherwise (restored after)."""
    if pairs > ONE_THREAD_PAIRS:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndexError(LookalikeError, RuntimeError):
    """A FAISS index that cannot be built, read or used."""


def estimate_bytes(factory: str, n_vectors: int, dim: int) -> int:
    """RAM an index of this type takes for ``n_vectors`` (ids included): faiss's code size per vector
    (``faiss.contrib.factory_tools.get_code_size``) plus the id overheads measured in benchmarks/ann.py
    (docs/benchmarks.md section 3: 8 B in the id map, 24 B more for an HNSW graph, 16 B in IVF lists), plus
    centroids, rotations and codebooks. A type faiss cannot size is counted as Flat."""
    try:
        code = get_code_size(dim, factory)
    except RuntimeError:
        return n_vectors * (4 * dim + 8)
    if factory.startswith("HNSW"):
        return n_vectors * (code + 24)
    ivf = re.match(r"^(?:OPQ\d+(?:_(\d+))?,)?IVF(\d+)", factory)
    if not ivf:
        return n_vectors * (code + 8)
    d = int(ivf.group(1) or dim)  # the dimension after an OPQ rotation
    fixed = int(ivf.group(2)) * 4 * d + (4 * dim * d if factory.startswith("OPQ") else 0)
    pq = re.search(r",PQ\d+(?:x(\d+))?", factory)
    if pq:
        fixed += 2 ** int(pq.group(1) or 8) * d * 4  # the codebooks: 2^bits centroids per sub-quantizer
    return fixed + n_vectors * (code + 16)


def choose_index_type(n_vectors: int, dim: int, max_memory_bytes: int | None = None, allow_hnsw: bool = True) -> str:
    """Pick a factory string for ``n_vectors`` of ``dim`` within an optional RAM budget.

    From the figures of benchmarks/ann.py (docs/benchmarks.md section 3): exact search below 50k vectors;
    HNSW32 (fastest single query at recall >= 0.95 on real-shaped embeddings, 1M x 1280-d) while it fits
    the budget, unless ``allow_hnsw`` is False (the engine measured HNSW missing the recall target on this
    collection, as on the hard synthetic set at 1M); IVF-Flat when that fits; IVF-PQ (shortlists re-ranked
    with the stored vectors) beyond, with the most bytes per vector that fit.
    Below 10k vectors there is too little to train a compressed index: Flat, whatever the budget.
    """
    def fits(t: str) -> bool:
        return max_memory_bytes is None or estimate_bytes(t, n_vectors, dim) <= max_memory_bytes

    if n_vectors < 10_000 or (n_vectors < 50_000 and fits("Flat")):
        return "Flat"
    if allow_hnsw and fits("HNSW32"):
        return "HNSW32"
    nlist = 4096 if n_vectors >= 400_000 else 1024 if n_vectors >= 40_000 else 256
    if fits(f"IVF{nlist},Flat"):
        return f"IVF{nlist},Flat"
    pqs = [f"IVF{nlist},PQ{m}" for m in (64, 32, 16, 8) if dim % m == 0] or [f"IVF{nlist},PQ8"]
    for t in pqs:
        if fits(t):
            return t
    return pqs[-1]  # nothing fits: the smallest


def resolve_factory(factory: str, n_train: int) -> str:
    """Shrink IVF list counts to what ``n_train`` vectors can train (>= 39 points per centroid)."""
    m = re.match(r"^(OPQ\d+(?:_\d+)?,)?IVF(\d+)(.*)$", factory)
    if not m:
        return factory
    nlist = int(m.group(2))
    max_lists = max(1, n_train // 39)
    if nlist > max_lists:
        nlist = 1 << max(0, int(np.floor(np.log2(max_lists))))
    return f"{m.group(1) or ''}IVF{nlist}{m.group(3)}"


def _faiss_reason(exc: BaseException) -> str:
    """The reason in a faiss error, without the C++ location ("Error in ... at file.cpp:123: reason")."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", text)


def needs_training(factory: str, dim: int) -> bool:
    """Whether an index of this type must be trained on data before vectors can be added."""
    try:
        return not faiss.index_factory(int(dim), resolve_factory(factory, 1 << 30), faiss.METRIC_INNER_PRODUCT).is_trained
    except RuntimeError as exc:
        raise VectorIndexError(f"invalid index type '{factory}': {_faiss_reason(exc)}") from None


def min_training_vectors(factory: str) -> int:
    """Fewest vectors an index of this type can be trained on: 2^bits per product-quantizer codebook
    (PQ32 means 256); IVF list counts shrink to what the data can train, so IVF-Flat needs 1."""
    m = re.search(r"PQ\d+(?:x(\d+))?", factory)
    return 2 ** int(m.group(1) or 8) if m else 1


@dataclass
class SearchParams:
    ef_search: int = 128
    nprobe: int = 32


def _read_failure(path: str, exc: BaseException) -> str:
    """What is wrong with an index file FAISS could not read, in words (not its C++ assertion)."""
    text = str(exc)
    try:
        size = os.path.getsize(path)
    except OSError:
        size = -1
    if size == 0:
        return "the file is empty"
    m = re.search(r"read error in .*?: (\d+) != (\d+)", text)
    if m:
        return f"the file is cut short: it ends {int(m.group(2)) - int(m.group(1)):,} bytes before the index does"
    if "not recognized" in text:
        return "not a FAISS index (unknown header)"
    if "out of range" in text or "failed" in text:
        return "its contents are not a valid FAISS index (overwritten or corrupted)"
    if isinstance(exc, MemoryError) or "bad_alloc" in text:
        return "its header claims more memory than there is (corrupted)"
    return " ".join(text.split())[:120]


_GENERATION_TAG = b"\nlookalike-generation:"


def _read_generation(path: str) -> str | None:
    """The generation token written after the index by :meth:`VectorIndex.save` (None: an untagged file)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 128))
            tail = fh.read()
    except OSError:
        return None
    at = tail.rfind(_GENERATION_TAG)
    if at < 0 or not tail.endswith(b"\n"):
        return None
    token = tail[at + len(_GENERATION_TAG):-1]
    return token.decode("ascii") if token.isalnum() else None


class VectorIndex:
    """An id-mapped FAISS index plus the ids it must hide (removed but not removable)."""

    generation: str | None = None  # the tag of the file it was read from or last saved to

    def __init__(self, index: faiss.Index, factory: str, hidden: set[int] | None = None) -> None:
        self.index = index
        self.factory = factory
        self.hidden: set[int] = set(hidden or ())
        self.mmapped = False  # memory-mapped (read-only) inverted lists: adding would abort inside faiss
        self.params = SearchParams()
        self.knobs: tuple[str, ...] | None = None  # ParameterSpace names this type has: efSearch, nprobe
        self.nlist = 0  # IVF inverted lists (0 for other types)
        self._apply_params()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, dim: int, factory: str = "Flat", train_vectors: np.ndarray | None = None) -> "VectorIndex":
        """An empty index; IVF/PQ types are trained on ``train_vectors`` (a sample of the data)."""
        if factory == "auto":
            n = 0 if train_vectors is None else len(train_vectors)
            factory = choose_index_type(n, dim)
        n_train = 0 if train_vectors is None else len(train_vectors)
        real = resolve_factory(factory, n_train)
        try:
            inner = faiss.index_factory(int(dim), real, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise VectorIndexError(f"invalid index type '{factory}': {_faiss_reason(exc)}") from None
        if not inner.is_trained:
            if train_vectors is None or len(train_vectors) == 0:
                raise VectorIndexError(f"index type '{factory}' needs training vectors")
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))  # training uses every core, then as it was
            try:
                inner.train(np.ascontiguousarray(train_vectors, dtype=np.float32))
            finally:
                faiss.omp_set_num_threads(before)
        return cls(faiss.IndexIDMap2(inner), real)  # the type actually built (IVF lists may shrink)

    @classmethod
    def load(cls, path: str | os.PathLike, factory: str | None = None, mmap: bool = False) -> "VectorIndex":
        """Read an index file; a missing or damaged file raises :class:`VectorIndexError` with the reason.

        ``mmap=True`` (IVF types) memory-maps the inverted lists instead of reading them: search only, the
        operating system pages lists in and out, so an index larger than RAM can be searched.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise VectorIndexError(f"{path}: FAISS index file is missing")
        try:
            idx = faiss.read_index(path, faiss.IO_FLAG_MMAP if mmap else 0)
        except Exception as exc:
            raise VectorIndexError(f"{path}: FAISS index file is damaged ({_read_failure(path, exc)})") from None
        if not isinstance(idx, faiss.IndexIDMap2):
            try:
                idx = faiss.downcast_index(idx)
            except Exception:
                pass
            if not isinstance(idx, faiss.IndexIDMap2):
                raise VectorIndexError(f"{path}: not a lookalike index (expected an IndexIDMap2)")
        out = cls(idx, factory or "unknown")
        out.mmapped = bool(mmap)
        out.generation = _read_generation(path)
        return out

    def save(self, path: str | os.PathLike, generation: str | None = None) -> None:
        """Write the index atomically (temp file in the same folder, fsync, rename), tagged with ``generation``
        (a short ASCII token the metadata database records too; FAISS ignores bytes after the index)."""
        with atomic_path(path, suffix=".faiss.tmp") as tmp:
            faiss.write_index(self.index, tmp)
            if generation:
                with open(tmp, "ab") as fh:
                    fh.write(_GENERATION_TAG + generation.encode("ascii") + b"\n")
        self.generation = generation

    # ------------------------------------------------------------------ contents
    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.ntotal - len(self.hidden)

    def ids(self) -> np.ndarray:
        """Every id stored in FAISS (hidden ones included)."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def visible_ids(self) -> np.ndarray:
        ids = self.ids()
        if not self.hidden:
            return ids
        return ids[~np.isin(ids, np.fromiter(self.hidden, dtype=np.int64))]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.mmapped:
            raise VectorIndexError("a memory-mapped index is read-only; load it into memory to add vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"vectors of shape {vectors.shape} do not fit an index of dimension {self.dim}")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.index.add_with_ids(vectors, ids)
        self.hidden.difference_update(int(i) for i in ids)

    def remove(self, ids) -> int:
        """Remove ids; for types without removal (HNSW) hide them instead. Returns how many were handled."""
        ids = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        if len(ids) == 0:
            return 0
        if self.mmapped:
            raise VectorIndexError("a memory-mapped index is read-only; load it into memory to remove vectors")
        try:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        except RuntimeError:
            present = set(int(i) for i in self.ids())
            hide = [int(i) for i in ids if int(i) in present]
            self.hidden.update(hide)
            return len(hide)

    def _apply_params(self) -> None:
        """Set the knobs through ``faiss.ParameterSpace``; the first call finds which ones this type has."""
        space = faiss.ParameterSpace()
        wanted = {"efSearch": int(self.params.ef_search), "nprobe": int(self.params.nprobe)}
        if self.knobs is None:
            found = []
            for name, value in wanted.items():
                try:
                    space.set_index_parameter(self.index, name, value)
                    found.append(name)
                except RuntimeError:  # this type has no such knob
                    pass
            self.knobs = tuple(found)
            self.nlist = int(faiss.extract_index_ivf(self.index).nlist) if "nprobe" in found else 0
        for name in self.knobs:
            space.set_index_parameter(self.index, name, min(wanted[name], self.nlist) if name == "nprobe" else wanted[name])

    def set_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Speed/recall knobs: HNSW ``efSearch`` and IVF ``nprobe`` (ignored by types without them)."""
        if ef_search is not None:
            self.params.ef_search = int(ef_search)
        if nprobe is not None:
            self.params.nprobe = int(nprobe)
        self._apply_params()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots are id -1. Hidden ids never appear."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise VectorIndexError(f"query of dimension {q.shape[1]} does not fit an index of dimension {self.dim}")
        if self.ntotal == 0 or k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        extra = min(len(self.hidden), self.ntotal)
        kk = min(k + extra, self.ntotal)
        with _threads_for(len(q) * self.ntotal):
            scores, ids = self.index.search(q, kk)
        if self.hidden:
            mask = np.isin(ids, np.fromiter(self.hidden, dtype=np.int64))
            ids = np.where(mask, -1, ids)
            scores = np.where(mask, -np.inf, scores)
            order = np.argsort(-scores, axis=1, kind="stable")
            ids = np.take_along_axis(ids, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
        return scores[:, :k], ids[:, :k]
