"""The search engine: the front door to an index folder. Each job is done by a part with one purpose:

- :class:`~lookalike.retrieval.folder.IndexFolder`: the file layout, the typed config, the writer lock;
- :class:`~lookalike.indexer.store.MetadataStore`: the metadata database, the source of truth;
- :class:`~lookalike.retrieval.maintainer.IndexMaintainer`: FAISS kept in line with the store, built, tuned, saved;
- :func:`~lookalike.indexer.pipeline.index_paths`: folders scanned, diffed, embedded and written in chunks;
- :class:`~lookalike.retrieval.searcher.Searcher`: queries loaded, embedded, searched and re-ranked.

    engine = Engine.open("my-index")  # a new index: DEFAULT_EMBEDDER (ntxent-copies); an old one: its own model
    engine.add(["~/Pictures"])
    for hit in engine.search("query.jpg", k=5):
        print(hit.rank, hit.score, hit.path)
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

import numpy as np
from PIL import Image
from sqlalchemy.exc import SQLAlchemyError

from lookalike.errors import EngineError
from lookalike.indexer.loading import DEFAULT_MAX_PIXELS
from lookalike.indexer.scan import is_below, merge_roots
from lookalike.indexer.store import ImageInfo, MetadataStore, StoreError, sqlite_url
from lookalike.log import logger
from lookalike.protocols import EmbedderLike
from lookalike.settings import PRECISIONS

from . import adapted
from .folder import IndexConfig, IndexFolder
from .index import VectorIndexError, needs_training
from .maintainer import IndexMaintainer
from .models import DEFAULT_EMBEDDER, EmbedderError
from .options import SearchOptions
from .preprocess import PreprocessConfig
from .runtime import RuntimeUnavailable, default_precision, load_embedder
from .searcher import SearchResult, SearchResults, Searcher, load_query

if TYPE_CHECKING:  # torch modules, imported only where they are used
    from lookalike.indexer.pipeline import IndexReport

    from .duplicates import DuplicateReport

_log = logger(__name__)

UNFINISHED_KEY = "unfinished_roots"  # store meta: folders whose last indexing run did not end (a JSON list)

__all__ = ["Engine", "EngineError", "SearchOptions", "SearchResult", "SearchResults", "IndexStatus", "RebuildReport"]


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
    precision: str
    index_type: str
    factory: str | None
    dim: int
    size_on_disk: int
    roots: list[str]
    search: dict | None = None  # knobs tuned on the collection and the recall they reached (retrieval/tune.py)
    unfinished: list[str] | None = None  # folders whose last indexing run did not finish (cancelled, failed, killed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RebuildReport:
    """What ``rebuild`` made: the index type built, its vector count, and where a damaged file was kept."""

    factory: str
    vectors: int
    damaged: str | None = None
    reembedded: int = 0           # images whose damaged stored vector was embedded again from their file
    removed: list[str] | None = None  # paths of images with a damaged vector and no file left holding them

    def to_dict(self) -> dict:
        return asdict(self)


def _check_index_type(index_type: str | None, dim: int) -> None:
    """Refuse a factory string FAISS cannot build, before anything is written."""
    if index_type and index_type != "auto":
        try:
            needs_training(index_type, dim)
        except VectorIndexError as exc:
            raise EngineError(f"{exc}; use auto, Flat, HNSW32 or IVF<lists>,Flat|PQ<m> (any FAISS factory string)") from None


def _create_folder(folder: IndexFolder, model: str | None, index_type: str | None, db_url: str | None, runtime: str,
                   precision: str | None) -> None:
    """A new index folder: its tables, then its config (which marks an index), once the model and the index type
    are known to work; two first runs at once: one creates, the other then opens what it made."""
    try:
        precision = precision or default_precision(model or DEFAULT_EMBEDDER, runtime)
        described = load_embedder(model or DEFAULT_EMBEDDER, runtime, precision).describe()
    except (EmbedderError, RuntimeUnavailable) as exc:
        raise EngineError(str(exc)) from None
    _check_index_type(index_type, int(described["dim"]))
    folder.create()
    with folder.writer_lock():
        if folder.exists():
            return
        if not db_url or db_url.startswith("sqlite"):
            try:
                MetadataStore(sqlite_url(folder.db_path), dim=int(described["dim"])).close()
            except StoreError as exc:
                raise EngineError(str(exc)) from None
        folder.write_config(IndexConfig.new(described, None, db_url, precision))  # a requested type: saved once built


def _check_config(folder: IndexFolder, config: IndexConfig, model: str | None, index_type: str | None,
                  db_url: str | None, precision: str | None) -> None:
    """Refuse what the caller asks for that this index is not (model, precision, database, index type), a saved
    index type FAISS cannot build, and a missing database under an index that held vectors."""
    root = folder.root
    if model and not adapted.accepts_model(config, model):
        raise EngineError(f"{root}: this index was built with model '{config.model}', not '{model}'; "
                          f"use another --db folder for a different model")
    if precision and precision != config.precision:
        raise EngineError(f"{root}: this index was built at precision {config.precision}, not {precision}; "
                          f"use another --db folder for a different precision")
    if db_url and db_url != config.db_url and not (config.db_url is None and db_url.startswith("sqlite")):
        raise EngineError(f"{root}: this index uses database {config.db_url or 'metadata.db'}, not {db_url}")
    if index_type:
        _check_index_type(index_type, config.dim)
    else:
        try:
            _check_index_type(config.index_type, config.dim)
        except EngineError as exc:
            raise EngineError(f"{folder.config_path}: saved setting: {exc}; run 'lookalike rebuild --db {root} "
                              f"--index-type auto' to replace it") from None
    if not config.db_url and config.index_written and (not folder.db_path.exists() or folder.db_path.stat().st_size == 0):
        raise EngineError(f"{folder.db_path}: metadata database is {'missing' if not folder.db_path.exists() else 'empty'} "
                          f"but this index held vectors; restore it from a backup (nothing was written)")


def _open_store(folder: IndexFolder, config: IndexConfig, repair: bool) -> MetadataStore:
    """The index's metadata store (read-only in a folder this process cannot write), after recovering from a
    killed ``lookalike adapt`` (the store ahead of the config)."""
    try:
        store = MetadataStore(config.db_url or sqlite_url(folder.db_path), dim=config.dim,
                              read_only=not folder.writable() and not config.db_url, repair=repair)
    except StoreError as exc:
        raise EngineError(str(exc)) from None
    try:
        adapted.recover(folder, config, store)
    except BaseException:
        store.close()
        raise
    return store


class Engine:
    """An index folder: open it, add folders, remove files, search by image."""

    def __init__(self, folder: IndexFolder, config: IndexConfig, store: MetadataStore,
                 max_pixels: int = DEFAULT_MAX_PIXELS, mmap: bool = False, runtime: str = "auto") -> None:
        self.folder = folder
        self.runtime = runtime
        self.config = config
        self.store = store
        self.max_pixels = max_pixels
        self.maintainer = IndexMaintainer(folder, config, store, mmap=mmap)
        self.searcher = Searcher(store, self.maintainer, self.embed, max_pixels=max_pixels,
                                 draft_size=lambda: self.embedder.preprocess.input_size,
                                 model=lambda: self.model_name)
        self._embedder: EmbedderLike | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, model: str | None = None, index_type: str | None = None,
             db_url: str | None = None, create: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS,
             load_index: bool = True, mmap: bool | None = None, runtime: str = "auto",
             precision: str | None = None, repair: bool = False) -> "Engine":
        """Open (or create) the index folder ``path``; refuses a model other than the one it was built with.

        ``runtime`` ("auto", "openvino", "onnxruntime", "torch") runs the model; the index records the model and
        its ``precision`` ("fp32", "bf16", "int8"; a new index's default fp32), not the runtime, so any runtime
        searches any index.
        ``index_type`` other than the folder's is built by the next write (``add`` or ``rebuild``), never
        by opening. ``load_index=False`` skips reading the FAISS file (for ``rebuild`` of a damaged one);
        ``repair`` (``rebuild``) recreates the database tables that can be recreated empty (skipped files, roots).
        Opening never creates or alters a table of an existing index; a new one is created under the writer lock.
        Stages: the folder created (a new index) -> its config checked against what is asked -> the store
        opened (and a killed adapt recovered) -> the engine assembled and its FAISS index loaded.
        """
        folder = IndexFolder(path)
        if precision is not None and precision not in PRECISIONS:
            raise EngineError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
        if not folder.exists():
            if not create:
                raise EngineError(f"{folder.root}: not a lookalike index (no {folder.config_path.name}); build one "
                                  f"with 'lookalike index DIR --db {folder.root}'")
            _create_folder(folder, model, index_type, db_url, runtime, precision)
        config = folder.read_config()
        _check_config(folder, config, model, index_type, db_url, precision)
        store = _open_store(folder, config, repair)
        try:
            engine = cls(folder, config, store, max_pixels=max_pixels,
                         mmap=bool(config.on_disk) if mmap is None else bool(mmap), runtime=runtime)
            if index_type and index_type != config.index_type:
                config.index_type = index_type  # kept in memory; written with the index that has this type
                engine.maintainer.retype = True
            if load_index:
                engine.maintainer.load()
        except BaseException:
            store.close()
            raise
        return engine

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def root(self):
        return self.folder.root

    @property
    def index(self):
        """The FAISS index (:class:`~lookalike.retrieval.index.VectorIndex`), None before the first build."""
        return self.maintainer.index

    @property
    def embedder(self) -> EmbedderLike:
        """The embedder this index was built with, on this engine's runtime (loaded on first use)."""
        if self._embedder is None:
            try:
                try:
                    emb = load_embedder(self.model_name, self.runtime, self.config.precision)
                except RuntimeUnavailable as exc:
                    if self.config.precision != "bf16":
                        raise
                    # a bf16 index where bf16 cannot run (another CPU, --runtime torch): fp32 vectors are within
                    # cosine about 0.998 of bf16 ones, so search goes on with them
                    emb = load_embedder(self.model_name, self.runtime, "fp32")
                    _log.warning(f"{exc}; this index is bf16: using fp32 vectors (cosine about 0.998 to bf16 ones)")
            except (EmbedderError, RuntimeUnavailable) as exc:
                raise EngineError(str(exc)) from None
            if emb.dim != self.dim:
                raise EngineError(f"model {self.config.model} gives {emb.dim}-d vectors, index holds {self.dim}-d")
            self._embedder = emb
        return self._embedder

    def _indexing_embedder(self) -> EmbedderLike:
        """The embedder for indexing: a CUDA GPU when there is one (runtime auto or torch), else ``embedder``."""
        if self.runtime in ("auto", "torch") and self.config.precision == "fp32":
            from .runtime import cuda_embedder

            gpu = cuda_embedder(self.model_name)
            if gpu is not None:
                return gpu
        return self.embedder

    @property
    def model_name(self) -> str:
        """The embedder name that made this index's vectors (its adapted head after ``lookalike adapt``)."""
        return adapted.model_name(self.config, self.root)

    @property
    def dim(self) -> int:
        return int(self.config.dim)

    def set_options(self, max_memory: int | None = None, on_disk: bool | None = None) -> None:
        """Persist index options: the memory budget ``auto`` chooses within, and memory-mapped IVF search."""
        if max_memory is not None:
            self.config.max_memory = int(max_memory)
        if on_disk is not None:
            self.config.on_disk = bool(on_disk)
            self.maintainer.mmap = bool(on_disk)
        if max_memory is not None or on_disk is not None:
            self.maintainer.write_config()

    # ------------------------------------------------------------------ writing
    def _storage_error(self, exc: BaseException) -> EngineError:
        """One line for a failed database write (disk full, read-only, lost server)."""
        orig = getattr(exc, "orig", None) or exc
        reason = " ".join(str(orig).split())[:200] or type(orig).__name__
        return EngineError(f"{self.store.url}: cannot write metadata ({reason}); what was committed before is kept")

    def add(self, paths: Iterable[str | os.PathLike], *, batch_size: int = 64, workers: int | None = None,
            progress: "bool | Callable[[str, int, int | None], None]" = True, remove_missing: bool = True,
            chunk_size: int = 512, warn: "Callable[[str, str], None] | Literal['stderr'] | None" = "stderr",
            executor: str = "local", ray_address: str | None = None, retry_skipped: bool = False,
            stop: "Callable[[], bool] | None" = None) -> "IndexReport":
        """Index image files and folders (incrementally); returns an :class:`IndexReport`.

        ``progress``: tqdm bars (True), none (False), or a callback ``(phase, done, total)``.
        ``warn``: what to do with each skipped file ``(path, reason)``: a one-line message on stderr
        ("stderr"), nothing (None), or a callback.
        ``executor="ray"`` embeds on Ray (a local instance, or the cluster at ``ray_address``).
        ``retry_skipped``: try every file skipped before again (otherwise only changed ones, unreadable ones that can
        be read now, and all of them when the pixel limit changed). ``stop``: asked after every batch; when it answers
        True the run keeps what it committed and returns (``report.cancelled``). The folders of a run are recorded
        as unfinished until a run over them ends (:meth:`unfinished_roots`), so a cancelled, failed or killed run
        is visible."""
        from lookalike.indexer.distributed import RayUnavailable
        from lookalike.indexer.pipeline import EmbedSpec, index_paths, warn_stderr

        paths = list(paths)
        spec = EmbedSpec(model=self.model_name, dim=self.dim, max_pixels=self.max_pixels,
                         load=self._indexing_embedder,
                         factory=functools.partial(load_embedder, runtime=self.runtime, precision=self.config.precision),
                         preprocess=(PreprocessConfig.from_dict(self.config.preprocess)
                                     if self.config.preprocess and self._embedder is None else None))
        with self.folder.writer_lock():
            self.maintainer.load_in_memory()
            self.maintainer.sync()  # another process may have written since we opened
            try:
                targets = merge_roots(paths)
                self._mark_unfinished(add=targets)
                report = index_paths(self.store, self.maintainer, spec, paths, batch_size=batch_size, workers=workers,
                                     progress=progress, remove_missing=remove_missing, chunk_size=chunk_size,
                                     warn=warn_stderr if warn == "stderr" else warn, executor=executor,
                                     ray_address=ray_address, retry_skipped=retry_skipped, stop=stop)
                if not report.cancelled:
                    self._mark_unfinished(drop=targets)
                return report
            except (RayUnavailable, FileNotFoundError, StoreError, VectorIndexError) as exc:
                raise EngineError(str(exc)) from None
            except SQLAlchemyError as exc:
                raise self._storage_error(exc) from None
            except OSError as exc:
                raise EngineError(f"{self.root}: cannot write ({exc.strerror or exc}); what was committed before is kept") from None

    def unfinished_roots(self) -> list[str]:
        """Folders whose last indexing run did not finish (cancelled, failed or killed); a finished run clears them."""
        try:
            return list(json.loads(self.store.get_meta(UNFINISHED_KEY) or "[]"))
        except ValueError:
            return []

    def _mark_unfinished(self, add: Sequence[str] = (), drop: Sequence[str] = ()) -> None:
        now = [r for r in self.unfinished_roots() if r not in drop and not any(is_below(r, d) for d in drop)]
        now += [r for r in add if r not in now]
        self.store.set_meta(**{UNFINISHED_KEY: json.dumps(now)})

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files (or everything below folders); returns how many files were removed."""
        targets = [os.path.abspath(os.fspath(p)) for p in paths]
        with self.folder.writer_lock():
            try:
                self.maintainer.load_in_memory()
                self.maintainer.sync()
                known = self.store.file_states(under=targets)
                self.maintainer.remove(self.store.remove_paths(list(known)))
                self.store.remove_roots(targets)
                self._mark_unfinished(drop=targets)
                self.maintainer.flush()
            except SQLAlchemyError as exc:
                raise self._storage_error(exc) from None
        return len(known)

    def rebuild(self, index_type: str | None = None) -> RebuildReport:
        """Rebuild the FAISS index from the stored vectors (optionally as another type).

        A damaged FAISS file is kept beside as ``vectors.faiss.damaged`` and replaced."""
        _check_index_type(index_type, self.dim)
        with self.folder.writer_lock():
            try:
                reembedded, removed = self._reembed_damaged_vectors()
            except SQLAlchemyError as exc:
                raise self._storage_error(exc) from None
            damaged = self.maintainer.move_damaged_aside()
            if index_type:
                self.config.index_type = index_type
            factory = self.maintainer.rebuild()
        return RebuildReport(factory=factory, vectors=len(self.index) if self.index is not None else 0, damaged=damaged,
                             reembedded=reembedded, removed=removed or None)

    def _reembed_damaged_vectors(self) -> tuple[int, list[str]]:
        """Embed again every image whose stored vector is damaged, from a file still holding its content (same
        sha256); images with no such file are forgotten (the next index run adds what their files now hold).
        Returns (images re-embedded, paths forgotten)."""
        bad = self.store.damaged_vectors()
        if not bad:
            return 0, []
        from lookalike.indexer.pipeline import embed_files

        infos = self.store.lookup(bad)
        todo = {iid: list(info.paths) for iid, info in infos.items()}
        fixed: dict[int, np.ndarray] = {}
        embedder = self.embedder
        while todo:  # the first path of each image, then the next for those whose file changed or failed
            tries = [(iid, paths.pop(0)) for iid, paths in todo.items() if paths]
            if not tries:
                break
            for vecs, meta, _ in embed_files(embedder, [p for _, p in tries], workers=0, progress=False,
                                             max_pixels=self.max_pixels):
                for row, (i, *_, sha) in enumerate(meta):
                    iid = tries[i][0]
                    if sha == infos[iid].sha256:
                        fixed[iid] = vecs[row]
            todo = {iid: paths for iid, paths in todo.items() if iid not in fixed and paths}
        self.store.set_vectors(sorted(fixed.items()))
        lost = [p for iid in bad if iid not in fixed and iid in infos for p in infos[iid].paths]
        lost_ids = [iid for iid in bad if iid not in fixed]
        if lost:
            self.store.remove_paths(lost)
        self.store.remove_orphans()  # a damaged image no file pointed at any more
        for iid in lost_ids:
            _log.warning(f"{self.store.url}: the stored vector of image {iid} was damaged and no file holds its "
                         f"content any more; it was removed")
        return len(fixed), lost

    # ------------------------------------------------------------------ reading
    def load_query(self, query: Any) -> tuple[Image.Image, str | None]:
        """Turn a path, bytes, array or PIL image into an RGB image (and its sha256 when known)."""
        return load_query(query, self.max_pixels)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB images with this index's model."""
        return self.embedder.embed_images(list(images))

    def search(self, query: Any, k: int | None = None, min_score: float | None = None, exclude_self: bool | None = None,
               denoise: str | None = None, sigma: float | str | None = None, n_samples: int | None = None,
               denoise_model: str | None = None, lowfreq: str | float | None = None, views: str | None = None,
               copies_only: bool | None = None, *, options: SearchOptions | None = None) -> SearchResults:
        """The ``k`` indexed images most like ``query`` (a path, bytes, array or PIL image).

        ``options`` (:class:`SearchOptions`) holds every knob below; a keyword given here (not None) overrides its
        field, and without ``options`` the keywords alone apply over SearchOptions' defaults (``k`` 10).

        ``denoise`` ("auto", "ddpm", "ddim", "classical") cleans a noisy query first; with ``n_samples`` > 1
        the search uses the mean embedding of the samples and reports their neighbours' consistency.
        Each result carries ``copy_score``, the calibrated probability that it is a copy of the query
        (:mod:`lookalike.retrieval.calibration`; None for a model without one), and ``match``: "copy" at or above
        the scorer's threshold, else "similar"; results are ranked by copy score (``score`` is the neural cosine).
        ``copies_only`` drops the "similar" ones.
        ``lowfreq``: "auto" lets the copy score weigh the low-frequency channel per query (and, with
        ``denoise="auto"``, noisy photos fuse it, retrieval.fusion); "off" ranks by the neural cosine alone; a
        number fuses it with that fixed weight.
        ``views`` ("mirror"; "mirror-turns": the mirror and three quarter turns, formerly "rot", a name still
        accepted) also searches flipped / turned copies of the query and keeps each image's best score (costs one
        embedding per view); "auto" does the "mirror-turns" views only when the
        plain query finds no copy and was not denoised (for mirrored and turned copies; most queries without a copy
        pay 4 more embeddings); "none" (the default) never.
        """
        opts = (options or SearchOptions()).updated(
            k=k, min_score=min_score, exclude_self=exclude_self, denoise=denoise, sigma=sigma, n_samples=n_samples,
            denoise_model=denoise_model, lowfreq=lowfreq, views=views, copies_only=copies_only)
        return self.searcher.search(query, opts)

    def search_vector(self, vector: Any, k: int = 10, min_score: float | None = None) -> SearchResults:
        """The ``k`` indexed images nearest an embedding vector of this index's dimension (normalised here)."""
        return self.searcher.search_vector(vector, k=k, min_score=min_score)

    def image(self, image_id: int) -> ImageInfo | None:
        """An indexed image's hash, size and paths by its id (None when it is not indexed)."""
        return self.store.lookup([int(image_id)]).get(int(image_id))

    def duplicates(self, threshold: float | None = None) -> "DuplicateReport":
        """Groups of near-duplicate images, each with every path and the one suggested to keep: copies by the
        model's calibrated copy score at ``threshold`` (default: the scorer's "copy" line; cosine similarity,
        default 0.86, for a model without one); see :mod:`lookalike.retrieval.duplicates`."""
        from .duplicates import find_duplicates

        return find_duplicates(self, threshold)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored (ids, vectors)."""
        parts = list(self.store.iter_vectors())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def status(self) -> IndexStatus:
        """Counts, settings and size on disk."""
        c = self.store.counts()
        index = self.index
        return IndexStatus(
            path=str(self.root), images=c["images"], files=c["files"],
            vectors=len(index) if index is not None else 0, duplicates=c["duplicates"],
            skipped=c["skipped"], skipped_by_reason=self.store.skipped_by_reason(), model=adapted.shown_model(self.config),
            precision=self.config.precision,            index_type=self.config.index_type, factory=index.factory if index is not None else None,
            dim=self.dim, size_on_disk=self.folder.size_on_disk(), roots=self.store.roots(), search=self.config.search,
            unfinished=self.unfinished_roots(),
        )

    def errors(self) -> list[tuple[str, str]]:
        """Skipped files with their reasons."""
        return [(r.path, r.reason) for r in self.store.skipped()]
