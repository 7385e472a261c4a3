"""Service code shared by the web app and the HTTP API: one warm engine, background index updates, and the
search/image helpers both front ends call (no Streamlit or FastAPI here).

Concurrency: request threads share one open :class:`~lookalike.retrieval.engine.Engine` and only read it (FAISS
searches and SQLAlchemy sessions are safe to run side by side). Writes never touch that object: an update runs
on a second Engine in a background thread (the engine's folder lock keeps other processes out), and when the
index files on disk change a fresh engine is opened and swapped in; requests already running finish on the old
one, whose store answers for ids removed since with no row (the engine then drops them).
"""
from __future__ import annotations

import gc
import io
import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from PIL import Image

from lookalike.indexer.loading import release_memory

from .safety import UnsafePathError, check_readable

__all__ = [
    "IndexGone",
    "NotIndexed",
    "QueryError",
    "WarmEngine",
    "image_file",
    "index_stamp",
    "indexed_file",
    "run_indexing",
    "thumbnail_jpeg",
]

RELOAD_FILES = ("lookalike.json", "vectors.faiss")  # rewritten at the end of every write that changes the vectors
RETRY_RELOAD_S = 5.0  # after a failed reopen (a damaged or half-written index), keep the old engine this long


class QueryError(ValueError):
    """A query the index cannot answer (wrong vector size, unknown id, ...); the message is one line."""


class NotIndexed(QueryError):
    """An image id or path the index does not hold."""


class IndexGone(RuntimeError):
    """The served index folder was deleted or moved away; the message is one line."""


def index_stamp(db: str | os.PathLike, names: tuple[str, ...] = ("lookalike.json", "vectors.faiss", "metadata.db")) -> tuple:
    """Changes whenever one of the index files ``names`` in ``db`` changes on disk."""
    out = []
    for name in names:
        try:
            st_ = os.stat(os.path.join(db, name))
            out.append((name, st_.st_mtime_ns, st_.st_size, st_.st_ino))
        except OSError:
            out.append((name, None, None, None))
    return tuple(out)


def run_indexing(db: str | os.PathLike, folders: list[str], model: str | None,
                 on_progress: Callable[[str, int, int | None], None] | bool = False, workers: int | None = None,
                 create: bool = True, runtime: str = "auto", precision: str | None = None,
                 stop: Callable[[], bool] | None = None):
    """Index ``folders`` into ``db`` (created with ``model`` and ``precision`` when new, if ``create``) on its own
    Engine running ``runtime``; returns the IndexReport (``stop``: see ``Engine.add``).

    ``workers`` decoding processes default to one less than the cores (at most 2): the caller is a server that
    keeps answering requests meanwhile.
    """
    from lookalike.retrieval.engine import Engine

    if workers is None:
        workers = max(0, min(2, (os.cpu_count() or 1) - 1))
    with Engine.open(db, model=model, create=create, runtime=runtime, precision=precision) as eng:  # skipped files are listed by the caller, not printed
        return eng.add(folders, progress=on_progress, workers=workers, warn=None, stop=stop)


class WarmEngine:
    """The shared read-only engine of a server: opened once with its model loaded, reopened when the index changes."""

    def __init__(self, path: str | os.PathLike, runtime: str = "auto") -> None:
        self.path = Path(path).expanduser().absolute()
        self.runtime = runtime
        self._lock = threading.Lock()  # one reopen at a time; readers never wait for it
        self.reload_error: str | None = None
        self._retry_at = 0.0
        self._stamp = index_stamp(self.path, RELOAD_FILES)
        self.engine = self._open()

    def _open(self):
        from lookalike.retrieval.engine import Engine

        eng = Engine.open(self.path, create=False, runtime=self.runtime)
        eng.search(Image.new("RGB", (64, 64)), k=1)  # load the model and its preprocessing now, not on the first query
        return eng

    def get(self):
        """The current engine. When the index files changed on disk, a fresh engine is opened in the background
        (one at a time) and replaces this one when it is ready: no request waits for a reopen."""
        if not (self.path / "lookalike.json").is_file():  # never answer from an index that is no longer there
            raise IndexGone(f"{self.path}: the index folder is gone (deleted or moved); restore it, or restart the "
                            f"service on another --db")
        if index_stamp(self.path, RELOAD_FILES) != self._stamp and time.monotonic() >= self._retry_at \
                and self._lock.acquire(blocking=False):
            threading.Thread(target=self._reload_and_release, name="lookalike-reopen", daemon=True).start()
        return self.engine

    def reload(self, force: bool = False) -> None:
        """Reopen now if the index files changed (after this process wrote the index), or always with ``force``
        (after a failed write: rows were committed that the FAISS file on disk may not hold; the reopened engine
        adds them from the database)."""
        with self._lock:
            if force or index_stamp(self.path, RELOAD_FILES) != self._stamp:
                self._reload()

    def _reload_and_release(self) -> None:
        try:
            self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> None:
        from lookalike.retrieval.engine import EngineError

        stamp = index_stamp(self.path, RELOAD_FILES)  # taken first: a write during the reopen triggers another
        try:
            fresh = self._open()
        except Exception as exc:  # noqa: BLE001 - the old engine keeps serving; /status shows why
            self.reload_error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self._retry_at = time.monotonic() + RETRY_RELOAD_S
            return
        old, self.engine, self._stamp, self.reload_error = self.engine, fresh, stamp, None
        old.close()  # requests still on it get fresh connections from its store; nothing they hold is freed
        del old
        gc.collect()  # the old engine's index and caches (held in reference cycles) go now, not at some later
        release_memory()  # collection, and the freed memory goes back to the system


def image_file(engine, image_id: int) -> Path:
    """The resolved path of a readable file holding image ``image_id``, inside the indexed roots.

    :class:`NotIndexed` for an unknown id; :class:`~lookalike.ui.safety.UnsafePathError` (with the reason of the
    first path) when no file of it may be served.
    """
    row = engine.store.lookup([int(image_id)]).get(int(image_id))
    if row is None or not row[3]:
        raise NotIndexed(f"image {image_id}: not in the index")
    roots = engine.store.roots()
    first: UnsafePathError | None = None
    for path in row[3]:
        try:
            return check_readable(path, roots)
        except UnsafePathError as exc:
            first = first or exc
    raise first


def indexed_file(engine, path: str) -> Path:
    """The resolved path of ``path`` when it is an indexed file inside the roots (:class:`NotIndexed` when not indexed)."""
    if engine.store.id_for_path(path) is None:
        raise NotIndexed(f"{path}: not an indexed file (give a path as search results name it)")
    return check_readable(path, engine.store.roots())


@lru_cache(maxsize=2048)
def _thumb(path: str, mtime_ns: int, size: int, px: int) -> bytes:
    from lookalike.indexer.loading import load_image

    im = load_image(path, draft_size=px)
    im.thumbnail((px, px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def thumbnail_jpeg(path: str | os.PathLike, px: int = 256) -> bytes:
    """A JPEG of ``path`` no larger than ``px`` on its longer side (cached by path, size and mtime).

    Raises :class:`~lookalike.indexer.loading.ImageLoadError` when the file cannot be decoded.
    """
    s = os.stat(path)
    return _thumb(os.fspath(path), s.st_mtime_ns, s.st_size, int(px))
