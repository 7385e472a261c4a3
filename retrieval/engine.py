"""The search engine: an index folder (config JSON + metadata DB + FAISS file) and the operations on it.

    engine = Engine.open("my-index", model="efficientnet_lite0")
    engine.add(["~/Pictures"])
    for hit in engine.search("query.jpg", k=5):
        print(hit.rank, hit.score, hit.path)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
from PIL import Image

from lookalike.indexer.loading import DEFAULT_MAX_PIXELS, ImageLoadError, load_image_and_hash, open_image_bytes
from lookalike.fsutil import atomic_write_text as _atomic_write_text
from lookalike.indexer.store import MetadataStore, StoreError, sqlite_url
from sqlalchemy.exc import SQLAlchemyError

from .embedders import DEFAULT_EMBEDDER, Embedder, EmbedderError, get_embedder
from .index import IndexError_, VectorIndex, choose_index_type, needs_training
from .tune import RECALL_TARGET, TUNE_QUERIES, ExactTopK, tune

__all__ = ["Engine", "EngineError", "SearchResult", "SearchResults", "IndexStatus", "ImageInput"]

CONFIG_NAME = "lookalike.json"
DB_NAME = "metadata.db"
INDEX_NAME = "vectors.faiss"
FORMAT_VERSION = 1
TUNE_MIN_VECTORS = 1000  # below this an approximate index is as good as exact at the default knobs
REFINE_FACTOR = 10  # PQ indexes: shortlist k*10, re-rank with the stored vectors (benchmarks/ann.py: recall 0.65 -> 0.95)

ImageInput = "str | os.PathLike | Image.Image | np.ndarray | bytes"


class EngineError(RuntimeError):
    """An index folder or query that cannot be used; the message is one line for the user."""


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

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]


@dataclass
class IndexStatus:
    """Counts and settings of an index folder."""

    path: str
    images: int
    files: int
    vectors: int
    duplicates: int
    skipped: int
    skipped_by_reason: dict[str, int]
    model: str
    index_type: str
    factory: str | None
    dim: int
    size_on_disk: int
    roots: list[str]
    search: dict | None = None  # knobs tuned on the collection and the recall they reached (retrieval/tune.py)

    def to_dict(self) -> dict:
        return asdict(self)


def _os_reason(exc: BaseException) -> str:
    """The OS reason of a failed write (faiss reports errno text inside a long RuntimeError)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    for reason in ("No space left on device", "Read-only file system", "Permission denied", "File too large",
                   "Disk quota exceeded"):
        if reason in text:
            return reason
    return text.strip().splitlines()[-1][:200] if text.strip() else type(exc).__name__


def _storage_error(engine: "Engine", exc: BaseException) -> str:
    """One line for a failed database write (disk full, read-only, lost server)."""
    orig = getattr(exc, "orig", None) or exc
    reason = " ".join(str(orig).split())[:200] or type(orig).__name__
    return f"{engine.store.url}: cannot write metadata ({reason}); what was committed before is kept"


class _WriterLock:
    """An exclusive advisory lock on the index folder for the duration of a write."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"
        self.fh = None

    def __enter__(self):
        import fcntl

        try:
            self.fh = open(self.path, "a+")
        except OSError as exc:
            raise EngineError(f"{self.path.parent}: cannot write to the index folder ({exc.strerror or exc})") from None
        try:
            # POSIX record lock: held by this process only, not inherited by forked decoding workers,
            # so a SIGKILLed writer never leaves a lock behind.
            fcntl.lockf(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise EngineError(f"{self.path.parent}: another lookalike process is writing this index; try again when it ends") from None
        # temp files left by a writer that was killed mid-save (only a lock holder writes them)
        folder = self.path.parent
        for stale in [*folder.glob(f".{INDEX_NAME}-*.tmp"), *folder.glob(f".{CONFIG_NAME}-*.tmp"), *folder.glob(".vectors-*.faiss.tmp")]:
            try:
                stale.unlink()
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self.fh:
            fcntl.lockf(self.fh.fileno(), fcntl.LOCK_UN)
            self.fh.close()


class Engine:
    """An index folder: open it, add folders, remove files, search by image."""

    def __init__(self, root: Path, config: dict, store: MetadataStore, index: VectorIndex | None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.index = index
        self.max_pixels = max_pixels
        self._embedder: Embedder | None = None
        self._dirty = False  # the in-memory index differs from the FAISS file
        self._config_dirty = False  # the in-memory config differs from lookalike.json

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, model: str | None = None, index_type: str | None = None,
             db_url: str | None = None, create: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS,
             load_index: bool = True, mmap: bool | None = None) -> "Engine":
        """Open (or create) the index folder ``path``; refuses a model other than the one it was built with.

        ``load_index=False`` skips reading the FAISS file (for ``rebuild`` of a damaged one).
        """
        root = Path(path).expanduser().absolute()
        cfg_path = root / CONFIG_NAME
        if cfg_path.exists():
            try:
                config = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise EngineError(f"{cfg_path}: unreadable index configuration ({exc})") from None
            if model and model != config.get("model"):
                raise EngineError(
                    f"{root}: this index was built with model '{config.get('model')}', not '{model}'; "
                    f"use another --db folder for a different model"
                )
            if db_url and db_url != config.get("db_url") and not (config.get("db_url") is None and db_url.startswith("sqlite")):
                raise EngineError(f"{root}: this index uses database {config.get('db_url') or 'metadata.db'}, not {db_url}")
            if index_type and index_type != config.get("index_type"):
                config["requested_index_type"] = index_type
        else:
            if not create:
                raise EngineError(f"{root}: not a lookalike index (no {CONFIG_NAME}); build one with 'lookalike index DIR --db {root}'")
            if root.exists() and not root.is_dir():
                raise EngineError(f"{root}: exists and is not a folder")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineError(f"{root}: cannot create index folder ({exc.strerror})") from None
            model = model or DEFAULT_EMBEDDER
            try:
                emb = get_embedder(model)
            except EmbedderError as exc:
                raise EngineError(str(exc)) from None
            config = {
                "format": FORMAT_VERSION,
                "lookalike_version": __import__("lookalike").__version__,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **emb.describe(),
                "index_type": index_type or "auto",
                "factory": None,
                "index_written": False,
                "db_url": db_url if db_url and not db_url.startswith("sqlite") else None,
            }
            try:
                _atomic_write_text(cfg_path, json.dumps(config, indent=2))
            except OSError as exc:
                raise EngineError(f"{cfg_path}: cannot write ({exc.strerror})") from None
        url = config.get("db_url") or sqlite_url(root / DB_NAME)
        db_file = root / DB_NAME
        if not config.get("db_url") and config.get("index_written") and (not db_file.exists() or db_file.stat().st_size == 0):
            raise EngineError(f"{db_file}: metadata database is {'missing' if not db_file.exists() else 'empty'} but this index "
                              f"held vectors; restore it from a backup (nothing was written)")
        read_only = not os.access(root, os.W_OK)
        try:
            store = MetadataStore(url, dim=int(config["dim"]), read_only=read_only and not config.get("db_url"))
        except StoreError as exc:
            raise EngineError(str(exc)) from None
        engine = cls(root, config, store, None, max_pixels=max_pixels)
        # IVF inverted lists memory-mapped from disk for searching (config "on_disk", or asked for here)
        engine._mmap = bool(config.get("on_disk")) if mmap is None else bool(mmap)
        if load_index:
            engine._load_index()
            if config.pop("requested_index_type", None):
                engine.rebuild(index_type)
        return engine

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def embedder(self) -> Embedder:
        """The embedder this index was built with (loaded on first use)."""
        if self._embedder is None:
            try:
                self._embedder = get_embedder(self.config["model"])
            except EmbedderError as exc:
                raise EngineError(str(exc)) from None
            if self._embedder.dim != int(self.config["dim"]):
                raise EngineError(f"model {self.config['model']} gives {self._embedder.dim}-d vectors, index holds {self.config['dim']}-d")
        return self._embedder

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    # ------------------------------------------------------------------ FAISS <-> store
    def _load_index(self) -> None:
        """Read the FAISS file and bring it in line with the store (the store is the truth)."""
        if self.index_path.exists():
            try:
                use_mmap = getattr(self, "_mmap", False) and "IVF" in str(self.config.get("factory") or "")
                self.index = VectorIndex.load(self.index_path, factory=self.config.get("factory"), mmap=use_mmap)
            except IndexError_ as exc:
                raise EngineError(f"{exc}; run 'lookalike rebuild --db {self.root}' to restore it from the stored vectors") from None
            if self.index.dim != self.dim:
                raise EngineError(f"{self.index_path}: index dimension {self.index.dim} != {self.dim}; run 'lookalike rebuild --db {self.root}'")
            self._apply_tuned()
        elif self.config.get("index_written"):
            raise EngineError(f"{self.index_path}: FAISS index file is missing; run 'lookalike rebuild --db {self.root}' to restore it from the stored vectors")
        self._sync()

    def _sync(self) -> None:
        db_ids = self.store.image_ids()
        if self.index is None:
            if len(db_ids) == 0 and not needs_training(self._requested_factory(0), self.dim):
                self.index = VectorIndex.create(self.dim, self._requested_factory(0))
                self.config["factory"] = self.index.factory
            elif len(db_ids):
                self._build(self._requested_factory(len(db_ids)))
            return
        have = self.index.ids()
        missing = np.setdiff1d(db_ids, have, assume_unique=False)
        extra = np.setdiff1d(have, db_ids, assume_unique=False)
        if self.index.mmapped and (len(missing) or len(extra)):
            self._load_in_memory()  # the file is behind the database: bring a writable copy in line
            return
        if len(extra):
            self.index.remove(extra)
        self._dirty = self._dirty or bool(len(missing) or len(extra))
        self.index.hidden.intersection_update(int(i) for i in have)
        for ids, vecs in self.store.iter_vectors(missing.tolist() if len(missing) else []):
            self.index.add(ids, vecs)

    def _requested_factory(self, n: int) -> str:
        t = self.config.get("index_type") or "auto"
        return self._auto_choice(n) if t == "auto" else t

    def _auto_choice(self, n: int) -> str:
        """``auto``'s type for n vectors: by size and budget, leaving out HNSW once it missed the recall target."""
        return choose_index_type(n, self.dim, self.config.get("max_memory"), allow_hnsw=not self.config.get("hnsw_missed_target"))

    def _load_in_memory(self) -> None:
        """Replace a memory-mapped (read-only) index by an in-memory copy, synced with the store."""
        if self.index is not None and self.index.mmapped:
            self.index = VectorIndex.load(self.index_path, factory=self.config.get("factory"))
            self._sync()

    def set_options(self, max_memory: int | None = None, on_disk: bool | None = None) -> None:
        """Persist index options: the memory budget ``auto`` chooses within, and memory-mapped IVF search."""
        if max_memory is not None:
            self.config["max_memory"] = int(max_memory)
        if on_disk is not None:
            self.config["on_disk"] = bool(on_disk)
            self._mmap = bool(on_disk)
        if max_memory is not None or on_disk is not None:
            self._write_config()

    def _build(self, factory: str) -> None:
        """Build the index anew from the stored vectors (the old one is released first: peak memory holds one)."""
        self.index = None  # the store holds every vector; the file on disk stays until the new index is saved
        self._dirty = True
        train = None
        if needs_training(factory, self.dim):
            train = self._training_sample()
            if train is None or len(train) == 0:
                return
        self.index = VectorIndex.create(self.dim, factory, train_vectors=train)
        del train  # up to 200k vectors: not kept while the index fills
        exact = self._tune_queries()
        for ids, vecs in self.store.iter_vectors():
            self.index.add(ids, vecs)
            if exact is not None:
                exact.add(ids, vecs)
        self.config["factory"] = self.index.factory
        if self.config.pop("search", None) is not None:
            self._config_dirty = True
        if exact is not None:
            result = self._tune(exact)
            if (not result.reached and self.index.factory.startswith("HNSW")
                    and (self.config.get("index_type") or "auto") == "auto"):
                self.config["hnsw_missed_target"] = True  # measured on this collection: IVF reaches it
                alt = self._auto_choice(len(self.index))
                if alt != self.index.factory:
                    self._build(alt)

    # ------------------------------------------------------------------ search-knob tuning
    def _tunable(self, n: int) -> bool:
        """Whether the current index, holding n vectors, has knobs worth tuning (approximate, not tiny)."""
        return self.index is not None and self.index.factory != "Flat" and n >= TUNE_MIN_VECTORS

    def _needs_tuning(self) -> bool:
        """An approximate index never tuned, or grown to twice the size it was tuned at."""
        n = len(self.index) if self.index is not None else 0
        if not self._tunable(n):
            return False
        tuned = self._tuned()
        return not tuned or n >= 2 * int(tuned.get("vectors") or 0)

    def _tuned(self) -> dict:
        """The tuned knobs in the config when they were measured on the current index type, else {}."""
        t = self.config.get("search") or {}
        return t if self.index is not None and t.get("factory") == self.index.factory else {}

    def _tune_queries(self) -> ExactTopK | None:
        """A fixed sample of stored vectors to tune on (None for exact or small indexes)."""
        if not self._tunable(TUNE_MIN_VECTORS):  # the index type only; the store's count is checked by the sample
            return None
        sample = self._stored_sample(TUNE_QUERIES, seed=1, min_n=TUNE_MIN_VECTORS)
        return ExactTopK(*sample) if sample is not None else None

    def _exact_pass(self, exact: ExactTopK | None) -> ExactTopK | None:
        if exact is not None:
            for ids, vecs in self.store.iter_vectors():
                exact.add(ids, vecs)
        return exact

    def _tune(self, exact: ExactTopK | None):
        """Tune the index's knobs on ``exact`` and keep them in the config."""
        if exact is None or self.index is None:
            return None
        result = tune(self.index, exact, refine=self._refines(), target=float(self.config.get("recall_target", RECALL_TARGET)))
        self.config["search"] = {**result.to_dict(), "factory": self.index.factory}
        self._config_dirty = True
        return result

    def _apply_tuned(self) -> None:
        t = self._tuned()
        if t:
            self.index.set_params(ef_search=t.get("ef_search"), nprobe=t.get("nprobe"))

    def _refine_factor(self) -> int:
        return int(self._tuned().get("refine_factor") or REFINE_FACTOR)

    def _training_sample(self, max_n: int = 200_000) -> np.ndarray | None:
        sample = self._stored_sample(max_n, seed=0)
        return sample[1] if sample is not None else None

    def _stored_sample(self, max_n: int, seed: int, min_n: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of at most ``max_n`` stored images picked at random (all when fewer); None below ``min_n``."""
        ids = self.store.image_ids()
        if len(ids) < max(1, min_n):
            return None
        pick = ids if len(ids) <= max_n else np.sort(np.random.default_rng(seed).choice(ids, max_n, replace=False))
        parts = list(self.store.iter_vectors(pick.tolist()))
        if not parts:
            return None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _index_add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if self.index is None:
            return  # trainable index not built yet: vectors wait in the store until the end of the run
        self.index.add(ids, vecs)
        self._dirty = True

    def _index_remove(self, ids: Sequence[int]) -> None:
        if self.index is not None and len(ids):
            self.index.remove(ids)
            self._dirty = True

    def save_index(self) -> None:
        """Write the FAISS file atomically (building a trainable index first if needed).

        Nothing is written when the index has not changed since it was read or last saved, so a run over
        an unchanged folder does not rewrite a large index file.
        """
        if self.index is None:
            n = len(self.store.image_ids())
            if n == 0:
                return
            self._build(self._requested_factory(n))
        elif self.config.get("index_type") == "auto":
            want = self._auto_choice(len(self.index))
            if want != self.index.factory and not self.index.hidden:
                self._build(want)
        if self.index is not None and self._needs_tuning():
            self._tune(self._exact_pass(self._tune_queries()))
        if self.index is None:
            return
        if self._dirty or not self.index_path.exists():
            try:
                self.index.save(self.index_path)
            except (OSError, RuntimeError) as exc:
                raise EngineError(f"{self.index_path}: cannot write index ({_os_reason(exc)}); the previous index file "
                                  f"is kept and the database holds every committed vector") from None
            self._dirty = False
            if not self.config.get("index_written") or self.config.get("factory") != self.index.factory:
                self.config["index_written"] = True
                self.config["factory"] = self.index.factory
                self._config_dirty = True
        if self._config_dirty:  # after the index file: the config never names knobs for an index not on disk
            self._write_config()

    def _write_config(self) -> None:
        try:
            _atomic_write_text(self.root / CONFIG_NAME, json.dumps(self.config, indent=2))
        except OSError as exc:
            raise EngineError(f"{self.root / CONFIG_NAME}: cannot write ({exc.strerror})") from None
        self._config_dirty = False

    # ------------------------------------------------------------------ writing
    def add(self, paths: Iterable[str | os.PathLike], *, batch_size: int = 64, workers: int | None = None,
            progress: "bool | Callable[[str, int, int | None], None]" = True, remove_missing: bool = True,
            chunk_size: int = 512, warn: "Callable[[str, str], None] | Literal['stderr'] | None" = "stderr",
            executor: str = "local", ray_address: str | None = None):
        """Index image files and folders (incrementally); returns an :class:`IndexReport`.

        ``progress``: tqdm bars (True), none (False), or a callback ``(phase, done, total)``.
        ``warn``: what to do with each skipped file ``(path, reason)``: a one-line message on stderr
        ("stderr"), nothing (None), or a callback.
        ``executor="ray"`` embeds on Ray (a local instance, or the cluster at ``ray_address``)."""
        from lookalike.indexer.distributed import RayUnavailable
        from lookalike.indexer.pipeline import _warn, index_paths

        paths = list(paths)
        with _WriterLock(self.root):
            self._load_in_memory()
            self._sync()  # another process may have written since we opened
            try:
                return index_paths(self, paths, batch_size=batch_size, workers=workers, progress=progress,
                                   remove_missing=remove_missing, chunk_size=chunk_size,
                                   warn=_warn if warn == "stderr" else warn, executor=executor, ray_address=ray_address)
            except RayUnavailable as exc:
                raise EngineError(str(exc)) from None
            except FileNotFoundError as exc:
                raise EngineError(str(exc)) from None
            except StoreError as exc:
                raise EngineError(str(exc)) from None
            except SQLAlchemyError as exc:
                raise EngineError(_storage_error(self, exc)) from None
            except OSError as exc:
                raise EngineError(f"{self.root}: cannot write ({exc.strerror or exc}); what was committed before is kept") from None

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files (or everything below folders); returns how many files were removed."""
        targets = [os.path.abspath(os.fspath(p)) for p in paths]
        with _WriterLock(self.root):
            try:
                self._load_in_memory()
                self._sync()
                known = self.store.file_states(under=targets)
                orphans = self.store.remove_paths(list(known))
                self._index_remove(orphans)
                self.save_index()
            except SQLAlchemyError as exc:
                raise EngineError(_storage_error(self, exc)) from None
        return len(known)

    def rebuild(self, index_type: str | None = None) -> str:
        """Rebuild the FAISS index from the stored vectors (optionally as another type); returns the factory."""
        with _WriterLock(self.root):
            if index_type:
                self.config["index_type"] = index_type
            n = len(self.store.image_ids())
            factory = self._requested_factory(n)
            if n == 0:
                if needs_training(factory, self.dim):
                    self.index = None
                else:
                    self.index = VectorIndex.create(self.dim, factory)
            else:
                try:
                    self._build(factory)
                except IndexError_ as exc:
                    raise EngineError(str(exc)) from None
            self._write_config()
            if self.index is not None:
                try:
                    self.index.save(self.index_path)
                except (OSError, RuntimeError) as exc:
                    raise EngineError(f"{self.index_path}: cannot write index ({_os_reason(exc)})") from None
                self.config["index_written"] = True
                self.config["factory"] = self.index.factory
                self._write_config()
            return self.index.factory if self.index is not None else factory

    # ------------------------------------------------------------------ reading
    def load_query(self, query) -> tuple[Image.Image, str | None]:
        """Turn a path, bytes, array or PIL image into an RGB image (and its sha256 when known)."""
        if isinstance(query, Image.Image):
            from lookalike.indexer.loading import to_rgb

            return to_rgb(query), None
        if isinstance(query, np.ndarray):
            arr = query if query.dtype == np.uint8 else np.clip(query * (255 if query.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
            from lookalike.indexer.loading import to_rgb

            return to_rgb(Image.fromarray(arr)), None
        if isinstance(query, (bytes, bytearray)):
            import hashlib

            try:
                return open_image_bytes(bytes(query), max_pixels=self.max_pixels), hashlib.sha256(query).hexdigest()
            except ImageLoadError as exc:
                raise EngineError(f"query: {exc.reason}") from None
        path = os.fspath(query)
        try:
            return load_image_and_hash(path, max_pixels=self.max_pixels)
        except ImageLoadError as exc:
            raise EngineError(f"{path}: {exc.reason}") from None

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB images with this index's model."""
        return self.embedder.embed_images(list(images))

    def search(self, query, k: int = 10, min_score: float | None = None, exclude_self: bool = False,
               denoise: str | None = None, sigma: float | str = "auto", n_samples: int = 1,
               denoise_model: str | None = None) -> SearchResults:
        """The ``k`` indexed images most like ``query`` (a path, bytes, array or PIL image).

        ``denoise`` ("auto", "ddpm", "ddim", "classical") cleans a noisy query first; with ``n_samples`` > 1
        the search uses the mean embedding of the samples and reports their neighbours' consistency.
        """
        if k <= 0:
            raise EngineError(f"k must be positive, got {k}")
        img, sha = self.load_query(query)
        den = None
        consistency = None
        if denoise and denoise != "none":
            from lookalike.retrieval.denoise import consistency_score, denoise_image

            den = denoise_image(img, method=denoise, sigma=sigma, model=denoise_model, n_samples=n_samples)
            samples = den.samples or [den.image]
            vecs = self.embed(samples)
            if len(samples) > 1:
                per = [self._search_vector(v, k) for v in vecs]
                consistency = consistency_score([[r.id for r in rs] for rs in per])
                q = vecs.mean(axis=0)
                q = q / max(float(np.linalg.norm(q)), 1e-12)
            else:
                q = vecs[0]
        else:
            q = self.embed([img])[0]
        self_id = self.store.id_for_sha(sha) if (exclude_self and sha) else None
        results = self._search_vector(q, k + (1 if self_id is not None else 0), exclude_id=self_id)[:k]
        if min_score is not None:
            results = [r for r in results if r.score >= min_score]
        name = os.fspath(query) if isinstance(query, (str, os.PathLike)) else None
        return SearchResults(results=results, query=name, denoise=den, consistency=consistency)

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[SearchResult]:
        """Neighbours of an embedding vector."""
        return self._search_vector(np.asarray(vector, np.float32), k)

    def _refines(self) -> bool:
        """Compressed (PQ) indexes only shortlist: the exact stored vectors re-rank the shortlist."""
        return self.index is not None and "PQ" in str(self.index.factory or "")

    def _refine(self, pairs: list[tuple[float, int]], vector: np.ndarray, k: int) -> list[tuple[float, int]]:
        """Re-rank (score, id) candidates by exact inner product with the vectors the store holds."""
        exact: list[tuple[float, int]] = []
        for ids, vecs in self.store.iter_vectors([i for _, i in pairs]):
            exact.extend(zip((vecs @ np.asarray(vector, np.float32)).tolist(), ids.tolist()))
        exact.sort(key=lambda p: -p[0])
        return [(float(sc), int(i)) for sc, i in exact[:k]]

    def _search_vector(self, vector: np.ndarray, k: int, exclude_id: int | None = None) -> list[SearchResult]:
        if self.index is None or len(self.index) == 0:
            return []
        scores, ids = self.index.search(vector[None, :], k * self._refine_factor() if self._refines() else k)
        pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) != exclude_id]
        if self._refines():
            pairs = self._refine(pairs, vector, k)
        meta = self.store.lookup([i for _, i in pairs])
        out: list[SearchResult] = []
        for score, iid in pairs:
            if iid not in meta:  # deleted by a concurrent writer since the index was read
                continue
            sha, w, h, paths = meta[iid]
            if not paths:
                continue
            out.append(SearchResult(rank=len(out) + 1, score=score, path=paths[0], sha256=sha, width=w, height=h,
                                    id=iid, paths=paths))
        return out

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored (ids, vectors)."""
        parts = list(self.store.iter_vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def status(self) -> IndexStatus:
        """Counts, settings and size on disk."""
        c = self.store.counts()
        size = sum(f.stat().st_size for f in self.root.iterdir() if f.is_file())
        return IndexStatus(
            path=str(self.root), images=c["images"], files=c["files"],
            vectors=len(self.index) if self.index is not None else 0, duplicates=c["duplicates"],
            skipped=c["skipped"], skipped_by_reason=self.store.skipped_by_reason(), model=self.config["model"],
            index_type=self.config.get("index_type", "auto"), factory=self.index.factory if self.index else None,
            dim=self.dim, size_on_disk=size, roots=self.store.roots(), search=self.config.get("search"),
        )

    def errors(self) -> list[tuple[str, str]]:
        """Skipped files with their reasons."""
        return [(r.path, r.reason) for r in self.store.skipped()]

