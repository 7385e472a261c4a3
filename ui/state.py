"""Shared state of the web app: settings, the cached engine, thumbnails and small helpers used by every page.

The engine (FAISS index + metadata DB + model) is opened once per index folder with ``st.cache_resource`` and
reopened only when the index files change on disk (after an update from the Index page or another process).
"""
from __future__ import annotations

import gc
import io
import os
import sys
import threading
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from .safety import DEFAULT_MAX_UPLOAD_MB, UnsafePathError, check_readable
from .service import index_stamp, thumbnail_jpeg

__all__ = [
    "THUMB_PX",
    "Settings",
    "engine_lock",
    "freeze_long_lived",
    "get_engine",
    "index_stamp",
    "indexed_paths",
    "load_indexed",
    "roots",
    "settings",
    "show_thumbnail",
    "short_path",
    "thumbnail",
]

THUMB_PX = 256
ENV_DB = "LOOKALIKE_DB"


@dataclass(frozen=True)
class Settings:
    db: str | None
    read_only: bool = True   # the index changes from the browser only when started with --allow-write
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    model: str | None = None  # model for a new index built from the Index page
    allow_roots: tuple[str, ...] = ()  # folders the Index page may index (--allow-root); empty: the index's roots
    runtime: str = "auto"     # inference runtime (--runtime)
    precision: str | None = None  # precision of a new index built from the Index page (--precision)

    def indexable_roots(self, engine) -> list[str]:
        """Where the Index page may index: the --allow-root folders, else the roots already in the index."""
        return list(self.allow_roots) or (roots(engine) if engine is not None else [])


def _argv_values(argv: list[str], flag: str) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith(flag + "="):
            out.append(a.split("=", 1)[1])
    return out


def _argv_value(argv: list[str], flag: str) -> str | None:
    values = _argv_values(argv, flag)
    return values[0] if values else None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def settings() -> Settings:
    """From the script arguments (``streamlit run app.py -- --db DIR``) or the environment (``LOOKALIKE_DB``)."""
    argv = sys.argv[1:]
    db = _argv_value(argv, "--db") or os.environ.get(ENV_DB) or None
    write = ("--allow-write" in argv or _env_flag("LOOKALIKE_UI_ALLOW_WRITE")) and not (
        "--read-only" in argv or _env_flag("LOOKALIKE_UI_READ_ONLY"))
    allowed = _argv_values(argv, "--allow-root") + [
        p for p in os.environ.get("LOOKALIKE_UI_ALLOW_ROOTS", "").split(os.pathsep) if p]
    try:
        mb = float(_argv_value(argv, "--max-upload-mb") or os.environ.get("LOOKALIKE_MAX_UPLOAD_MB") or DEFAULT_MAX_UPLOAD_MB)
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    model = _argv_value(argv, "--model") or os.environ.get("LOOKALIKE_UI_MODEL") or None
    if db:
        db = os.path.abspath(os.path.expanduser(db))
    return Settings(db=db, read_only=not write, max_upload_mb=mb, model=model,
                    runtime=_argv_value(argv, "--runtime") or os.environ.get("LOOKALIKE_RUNTIME") or "auto",
                    precision=_argv_value(argv, "--precision") or None,
                    allow_roots=tuple(os.path.realpath(os.path.expanduser(p)) for p in allowed))


@st.cache_resource(max_entries=1, show_spinner=False)
def engine_lock(db: str) -> threading.RLock:
    """One lock per index folder: searches, status and updates on the shared engine take turns."""
    return threading.RLock()


@st.cache_resource(max_entries=2, show_spinner="Loading index and model…")
def _open_engine(db: str, stamp: tuple):
    from lookalike.retrieval.engine import Engine

    eng = Engine.open(db, create=False, runtime=settings().runtime)
    _ = eng.embedder  # load the model now, once, not on the first search
    return eng


def get_engine(db: str | None = None):
    """The cached :class:`Engine` for ``db`` (the configured one by default), or None when there is no index yet.

    Raises :class:`lookalike.retrieval.engine.EngineError` for a damaged index.
    """
    db = db or settings().db
    if not db or not os.path.isfile(os.path.join(db, "lookalike.json")):
        return None
    return _open_engine(db, index_stamp(db))


_frozen_at: tuple[int, int] | None = None


def freeze_long_lived(engine: object | None = None) -> bool:
    """Move the objects that live as long as the server (modules, the cached engine and model) out of the garbage
    collector's reach once they exist; returns whether it froze now.

    Streamlit runs a full collection after every script run (``runner.postScriptGC``). With the model loaded that
    walked about 264,000 objects, 100 ms on a quiet core and several times that while the server answers the
    page's thumbnail requests; frozen, it walks only what the run made (docs/benchmarks.md, "web UI"). It freezes
    again only when modules were imported or the engine changed since the last time, and collects first, so no
    garbage is kept."""
    global _frozen_at
    key = (len(sys.modules), id(engine))
    if key == _frozen_at:
        return False
    gc.collect()
    gc.freeze()
    _frozen_at = key
    return True


def forget_engine() -> None:
    """Drop cached engines (after the Index page wrote the index)."""
    _open_engine.clear()


def roots(engine) -> list[str]:
    with engine_lock(str(engine.root)):
        return engine.store.roots()


@st.cache_data(max_entries=20, show_spinner=False)
def _indexed_paths(db: str, stamp: tuple) -> list[str]:
    eng = get_engine(db)
    if eng is None:
        return []
    with engine_lock(db):
        return sorted(eng.store.file_states())


def indexed_paths(engine) -> list[str]:
    """Every indexed file path (sorted)."""
    db = str(engine.root)
    return _indexed_paths(db, index_stamp(db))


def thumbnail(path: str, allowed_roots: list[str], px: int = THUMB_PX) -> bytes | None:
    """A small JPEG of an indexed file (cached), or None when it cannot be read or is outside the roots."""
    try:
        return thumbnail_jpeg(check_readable(path, allowed_roots), px)
    except UnsafePathError:
        return None
    except Exception:  # unreadable since indexing: the caller shows a placeholder
        return None


def show_thumbnail(path: str, allowed_roots: list[str], width: int, height: int, lazy: bool = True,
                   px: int = THUMB_PX) -> None:
    """Draw an indexed file's thumbnail (``width`` x ``height``: the picture's size, for its box): from the
    thumbnail route, which the browser asks (``lazy``: only near the screen), when the server has it, else inline;
    a caption when the file cannot be read."""
    from . import thumbs

    if thumbs.served():
        try:
            url = thumbs.thumbnail_url(str(check_readable(path, allowed_roots)), px)
        except Exception:  # noqa: BLE001 - outside the roots, or gone since indexing
            url = None
        if url is not None:
            st.html(thumbs.img_tag(url, width, height, px, os.path.basename(path), lazy=lazy))
            return
    else:
        data = thumbnail(path, allowed_roots, px)
        if data is not None:
            st.image(data, width="stretch")
            return
    st.caption("(file not readable)")


def load_indexed(path: str, allowed_roots: list[str]) -> bytes:
    """The bytes of an indexed file, after the containment check (UnsafePathError otherwise)."""
    rp = check_readable(path, allowed_roots)
    return rp.read_bytes()


def short_path(path: str, allowed_roots: list[str]) -> str:
    """``path`` relative to the root holding it (with the root's name first), for display."""
    p = os.path.abspath(path)
    for r in sorted(allowed_roots, key=len, reverse=True):
        r_ = os.path.abspath(r)
        if p == r_ or p.startswith(r_.rstrip(os.sep) + os.sep):
            return os.path.join(os.path.basename(r_.rstrip(os.sep)), os.path.relpath(p, r_))
    return p


def folder_of(path: str, allowed_roots: list[str]) -> str:
    """The parent folder of ``path`` relative to its root (``photos``, ``cifar10/cat``)."""
    return os.path.dirname(short_path(path, allowed_roots)) or "."


def image_to_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def open_page(title: str, caption: str | None = None, require_index: bool = True):
    """Show a page's title (and caption); returns its settings and the engine (None, the reason shown, when none)."""
    cfg = settings()
    st.title(title)
    if caption:
        st.caption(caption)
    return cfg, engine_or_message(cfg.db, require_index)


def no_index_message(db: str | None) -> None:
    if not db:
        st.error("No index folder configured: start the app with `lookalike ui --db INDEX_DIR`.")
    else:
        st.info(f"No index in `{db}` yet. Build one on the **Index** page.")


def engine_or_message(db: str | None, require_index: bool = True):
    """The cached engine for ``db``; on failure show the reason (or the "no index yet" hint) and return None."""
    from lookalike.retrieval.engine import EngineError

    try:
        eng = get_engine(db)
    except EngineError as exc:
        st.error(str(exc))
        return None
    if eng is None and require_index:
        no_index_message(db)
    return eng
