"""Keeps the FAISS index in line with the metadata store: load and re-sync, build, the automatic type
choice, search-knob tuning, and the atomic save. It is the writer the indexing pipeline talks to
(``add`` / ``remove`` / ``flush``).

The store is the truth; the FAISS file is a cache that can always be rebuilt from the stored vectors.
"""
from __future__ import annotations

import os
import uuid
from typing import Sequence

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from lookalike.errors import EngineError
from lookalike.indexer.store import MetadataStore
from lookalike.log import logger

from .folder import IndexConfig, IndexFolder
from .index import VectorIndex, VectorIndexError, choose_index_type, min_training_vectors, needs_training
from .tune import RECALL_TARGET, TUNE_QUERIES, ExactTopK, TuneResult, tune

__all__ = ["IndexMaintainer", "TUNE_MIN_VECTORS", "REFINE_FACTOR", "write_failure_reason"]

_log = logger(__name__)

TUNE_MIN_VECTORS = 1000  # below this an approximate index is as good as exact at the default knobs
REFINE_FACTOR = 10  # PQ indexes: shortlist k*10, re-rank with the stored vectors (benchmarks/ann.py: recall 0.65 -> 0.95)
TRAIN_SAMPLE = 200_000  # most stored vectors an IVF/PQ index is trained on
# the store's meta rows naming the FAISS file written with it: each save tags the file with a new token, recorded as
# "next" before the file is written and as the generation after, so a kill in between still matches; a file restored
# from a backup or copied from another index (the same ids: SQLite reuses them) carries another token
GENERATION_KEY, NEXT_GENERATION_KEY = "faiss_generation", "faiss_generation_next"


def write_failure_reason(exc: BaseException) -> str:
    """The OS reason of a failed index write (faiss reports errno text inside a long RuntimeError)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    for reason in ("No space left on device", "Read-only file system", "Permission denied", "File too large",
                   "Disk quota exceeded"):
        if reason in text:
            return reason
    return text.strip().splitlines()[-1][:200] if text.strip() else type(exc).__name__


class IndexMaintainer:
    """The FAISS side of an index folder, synced from ``store``; ``config`` is shared with the engine."""

    def __init__(self, folder: IndexFolder, config: IndexConfig, store: MetadataStore, mmap: bool = False) -> None:
        self.folder = folder
        self.config = config
        self.store = store
        self.index: VectorIndex | None = None
        self.mmap = mmap
        self.dirty = False         # the in-memory index differs from the FAISS file
        self.config_dirty = False  # the in-memory config differs from lookalike.json
        self.retype = False        # the user asked for another index type: the next flush builds it
        self.file_vectors = 0      # vectors in the FAISS file when it was read (an empty index never replaces them
                                   # while the database still lists files: see save)

    @property
    def dim(self) -> int:
        return int(self.config.dim)

    # ------------------------------------------------------------------ loading and sync
    def load(self) -> None:
        """Read the FAISS file and bring it in line with the store (the store is the truth)."""
        path = self.folder.index_path
        rebuild_hint = f"run 'lookalike rebuild --db {self.folder.root}' to restore it from the stored vectors"
        if path.exists():
            known = self.generations()
            try:
                use_mmap = self.mmap and "IVF" in str(self.config.factory or "")
                self.index = VectorIndex.load(path, factory=self.config.factory, mmap=use_mmap)
            except VectorIndexError as exc:
                raise EngineError(f"{exc}; {rebuild_hint}") from None
            if self.index.dim != self.dim:
                raise EngineError(f"{path}: index dimension {self.index.dim} != {self.dim}; {rebuild_hint}")
            self.file_vectors = len(self.index)
            known |= self.generations()  # a writer may have saved while the file was read
            if known and self.index.generation not in known:
                _log.warning(f"{path}: this FAISS file was not written with this index's database (restored from a "
                             f"backup or copied from another index); it is rebuilt from the stored vectors"
                             + ("" if self.folder.writable() else " in memory (the folder is read-only)"))
                self.index, self.file_vectors = None, 0
                self.sync()
                self.dirty = True
                return
            self.apply_tuned()
        elif self.config.index_written:
            raise EngineError(f"{path}: FAISS index file is missing; {rebuild_hint}")
        self.sync()

    def generations(self) -> set[str]:
        """The FAISS file tokens the store accepts (empty: written before tokens were recorded)."""
        try:
            return {g for g in (self.store.get_meta(GENERATION_KEY), self.store.get_meta(NEXT_GENERATION_KEY)) if g}
        except SQLAlchemyError:
            return set()

    def sync(self) -> None:
        """Add the stored vectors the index lacks and drop the ids the store no longer has."""
        db_ids = self.store.image_ids()
        if self.index is None:
            factory = self.requested_factory(len(db_ids))
            if len(db_ids) == 0 and not needs_training(factory, self.dim):
                self.index = VectorIndex.create(self.dim, factory)
                self.config.factory = self.index.factory
            elif len(db_ids):
                self.build(factory)
            return
        have = self.index.ids()
        missing = np.setdiff1d(db_ids, have, assume_unique=False)
        extra = np.setdiff1d(have, db_ids, assume_unique=False)
        if self.index.mmapped and (len(missing) or len(extra)):
            self.load_in_memory()  # the file is behind the database: bring a writable copy in line
            return
        if len(extra):
            self.index.remove(extra)
        self.dirty = self.dirty or bool(len(missing) or len(extra))
        self.index.hidden.intersection_update(int(i) for i in have)
        for ids, vecs in self.store.iter_vectors(missing.tolist() if len(missing) else []):
            self.index.add(ids, vecs)

    def load_in_memory(self) -> None:
        """Replace a memory-mapped (read-only) index by an in-memory copy, synced with the store."""
        if self.index is not None and self.index.mmapped:
            self.index = VectorIndex.load(self.folder.index_path, factory=self.config.factory)
            self.apply_tuned()
            self.sync()

    # ------------------------------------------------------------------ the index type
    def requested_factory(self, n: int) -> str:
        """The factory string to build for ``n`` vectors: the user's, or ``auto``'s choice."""
        t = self.config.index_type or "auto"
        return self.auto_choice(n) if t == "auto" else t

    def auto_choice(self, n: int) -> str:
        """``auto``'s type for n vectors: by size and budget, leaving out HNSW once it missed the recall target."""
        return choose_index_type(n, self.dim, self.config.max_memory, allow_hnsw=not self.config.hnsw_missed_target)

    def build(self, factory: str) -> None:
        """Build the index anew from the stored vectors (the old one is released first: peak memory holds one)."""
        self.index = None  # the store holds every vector; the file on disk stays until the new index is saved
        self.dirty = True
        train = None
        if needs_training(factory, self.dim):
            train = self.stored_sample(TRAIN_SAMPLE, seed=0)
            if train is None:
                return
            train = train[1]
        self.index = VectorIndex.create(self.dim, factory, train_vectors=train)
        del train  # up to 200k vectors: not kept while the index fills
        exact = self.tune_queries()
        for ids, vecs in self.store.iter_vectors():
            self.index.add(ids, vecs)
            if exact is not None:
                exact.add(ids, vecs)
        self.config.factory = self.index.factory
        self.config.search = None
        self.config_dirty = True  # the type built and its (re-)tuned knobs go to lookalike.json with the file
        if exact is not None:
            result = self.tune(exact)
            if (result is not None and not result.reached and self.index.factory.startswith("HNSW")
                    and (self.config.index_type or "auto") == "auto"):
                self.config.hnsw_missed_target = True  # measured on this collection: IVF reaches it
                alt = self.auto_choice(len(self.index))
                if alt != self.index.factory:
                    self.build(alt)

    def stored_sample(self, max_n: int, seed: int, min_n: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, vectors) of at most ``max_n`` stored images picked at random (all when fewer); None below ``min_n``."""
        ids = self.store.image_ids()
        if len(ids) < max(1, min_n):
            return None
        pick = ids if len(ids) <= max_n else np.sort(np.random.default_rng(seed).choice(ids, max_n, replace=False))
        parts = list(self.store.iter_vectors(pick.tolist()))
        if not parts:
            return None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    # ------------------------------------------------------------------ search-knob tuning
    def tunable(self, n: int) -> bool:
        """Whether the current index, holding n vectors, has knobs worth tuning (approximate, not tiny)."""
        return self.index is not None and self.index.factory != "Flat" and n >= TUNE_MIN_VECTORS

    def needs_tuning(self) -> bool:
        """An approximate index never tuned, or grown to twice the size it was tuned at."""
        n = len(self.index) if self.index is not None else 0
        if not self.tunable(n):
            return False
        tuned = self.tuned()
        return not tuned or n >= 2 * int(tuned.get("vectors") or 0)

    def tuned(self) -> dict:
        """The tuned knobs in the config when they were measured on the current index type, else {}."""
        t = self.config.search or {}
        return t if self.index is not None and t.get("factory") == self.index.factory else {}

    def tune_queries(self) -> ExactTopK | None:
        """A fixed sample of stored vectors to tune on (None for exact or small indexes)."""
        if not self.tunable(TUNE_MIN_VECTORS):  # the index type only; the store's count is checked by the sample
            return None
        sample = self.stored_sample(TUNE_QUERIES, seed=1, min_n=TUNE_MIN_VECTORS)
        return ExactTopK(*sample) if sample is not None else None

    def tune(self, exact: ExactTopK | None) -> TuneResult | None:
        """Tune the index's knobs on ``exact`` (filled with every stored vector) and keep them in the config."""
        if exact is None or self.index is None:
            return None
        target = float(self.config.recall_target or RECALL_TARGET)
        result = tune(self.index, exact, refine=self.refines(), target=target)
        self.config.search = {**result.to_dict(), "factory": self.index.factory}
        self.config_dirty = True
        return result

    def apply_tuned(self) -> None:
        t = self.tuned()
        if t:
            self.index.set_params(ef_search=t.get("ef_search"), nprobe=t.get("nprobe"))

    def refines(self) -> bool:
        """Compressed (PQ) indexes only shortlist: the exact stored vectors re-rank the shortlist."""
        return self.index is not None and "PQ" in str(self.index.factory or "")

    def refine_factor(self) -> int:
        return int(self.tuned().get("refine_factor") or REFINE_FACTOR)

    # ------------------------------------------------------------------ the writer interface
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors just committed to the store."""
        if self.index is None:
            return  # trainable index not built yet: vectors wait in the store until the end of the run
        self.index.add(ids, vectors)
        self.dirty = True

    def remove(self, ids: Sequence[int]) -> None:
        """Ids just deleted from the store."""
        if self.index is not None and len(ids):
            self.index.remove(ids)
            self.dirty = True

    def expect(self, n_images: int) -> None:
        """Refuse, before anything is embedded, an index type that ``n_images`` vectors cannot train."""
        factory = self.requested_factory(n_images)
        need = min_training_vectors(factory) if needs_training(factory, self.dim) else 0
        if n_images < need:
            raise VectorIndexError(f"index type '{factory}' needs at least {need} images to train its codebooks and "
                                   f"this index would hold {n_images}; use --index-type auto, Flat, HNSW32 or "
                                   f"IVF<lists>,Flat (nothing was embedded; the index is unchanged)")

    def flush(self) -> None:
        """Bring the index to the type it should have, tune it if due, and write it (and the config) atomically.

        Nothing is written when the index has not changed since it was read or last saved, so a run over
        an unchanged folder does not rewrite a large index file.
        """
        if self.index is None:
            n = len(self.store.image_ids())
            if n == 0:
                return
            self.build(self.requested_factory(n))
        else:
            want = self.requested_factory(len(self.index))
            auto_switch = self.config.index_type == "auto" and want != self.index.factory and not self.index.hidden
            if self.retype or auto_switch:
                self.build(want)
        self.retype = False
        if self.index is not None and self.needs_tuning():
            exact = self.tune_queries()
            if exact is not None:
                for ids, vecs in self.store.iter_vectors():
                    exact.add(ids, vecs)
            self.tune(exact)
        if self.index is None:
            return
        if self.dirty or not self.folder.index_path.exists():
            self.save(keep_note="; the previous index file is kept and the database holds every committed vector")
        if self.config_dirty or self.config.repaired:  # after the index file: the config never names knobs for an
            self.write_config()                         # index not on disk

    def save(self, keep_note: str = "") -> None:
        """Write the FAISS file atomically and record it in the config."""
        path = self.folder.index_path
        if len(self.index) == 0 and self.file_vectors > 0:
            files = self.store.counts()["files"]
            if files:  # the rows do not say the images are gone: a damaged database, never a reason to drop vectors
                raise EngineError(f"{self.store.url}: the database lists {files} files but no images; {path} "
                                  f"({self.file_vectors} vectors) was kept; the database is damaged: restore it "
                                  f"from a backup or index the folders again into a new --db folder")
        token = uuid.uuid4().hex
        try:
            self.store.set_meta(**{NEXT_GENERATION_KEY: token})
            self.index.save(path, generation=token)
            self.store.set_meta(**{GENERATION_KEY: token})
        except SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
            raise EngineError(f"{self.store.url}: cannot write metadata ({reason}){keep_note}") from None
        except (OSError, RuntimeError) as exc:
            raise EngineError(f"{path}: cannot write index ({write_failure_reason(exc)}){keep_note}") from None
        self.dirty = False
        self.file_vectors = len(self.index)
        if not self.config.index_written or self.config.factory != self.index.factory:
            self.config.index_written = True
            self.config.factory = self.index.factory
            self.config_dirty = True

    def write_config(self) -> None:
        self.folder.write_config(self.config)
        self.config_dirty = self.config.repaired = False

    def rebuild(self) -> str:
        """Build the index from the stored vectors as the config asks and save it; returns the factory."""
        self.retype = False
        n = len(self.store.image_ids())
        factory = self.requested_factory(n)
        if n == 0:
            self.index = None if needs_training(factory, self.dim) else VectorIndex.create(self.dim, factory)
        else:
            try:
                self.build(factory)
            except VectorIndexError as exc:
                raise EngineError(str(exc)) from None
        if self.index is not None:
            self.save()
        self.write_config()
        return self.index.factory if self.index is not None else factory

    def move_damaged_aside(self) -> str | None:
        """If the FAISS file cannot be read, rename it ``*.damaged`` (kept for the user); returns that path."""
        path = self.folder.index_path
        if not path.exists():
            return None
        try:
            VectorIndex.load(path)
            return None
        except VectorIndexError:
            damaged = f"{path}.damaged"
            os.replace(path, damaged)
            return damaged
