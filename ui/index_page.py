"""Index page: build or update the index from a folder with a live progress bar; counts and skipped files."""
from __future__ import annotations

import os
import time

import streamlit as st

from lookalike.fsutil import human_bytes

from . import state
from .safety import is_inside
from .service import run_indexing

_PHASES = {"scanning": "Scanning folders", "hashing": "Hashing changed files", "embedding": "Embedding new images"}


def _start(db: str, folders: list[str], model: str | None) -> None:
    from lookalike.retrieval.engine import EngineError

    bar = st.progress(0.0, text="Starting…")
    last = [0.0]

    def on_progress(phase: str, n: int, total: int | None) -> None:
        now = time.perf_counter()
        done = total is not None and n >= total
        if now - last[0] < 0.15 and not done:
            return
        last[0] = now
        label = _PHASES.get(phase, phase or "Working")
        if total:
            bar.progress(min(1.0, n / total), text=f"{label}: {n} / {total}")
        else:
            bar.progress(0.0, text=f"{label}: {n} files found")

    t0 = time.perf_counter()
    try:
        conf = state.settings()
        report = run_indexing(db, folders, model, on_progress, runtime=conf.runtime, precision=conf.precision)
    except EngineError as exc:
        bar.empty()
        st.session_state["index_error"] = str(exc)
        st.session_state.pop("index_report", None)
        return
    bar.progress(1.0, text=f"Done in {time.perf_counter() - t0:.1f} s")
    state.forget_engine()
    st.session_state.pop("index_error", None)
    st.session_state["index_report"] = {"summary": report.summary(), "problems": list(report.problems),
                                        "folders": folders}
    st.rerun()


def render() -> None:
    from lookalike.retrieval.models import DEFAULT_EMBEDDER
    from lookalike.retrieval.runtime import list_models as list_embedders

    cfg = state.settings()
    st.title("Index")
    if not cfg.db:
        state.no_index_message(None)
        return
    eng = state.engine_or_message(cfg.db, require_index=False)

    if err := st.session_state.get("index_error"):
        st.error(err)
    if rep := st.session_state.get("index_report"):
        st.success(f"{', '.join(os.path.basename(f) or f for f in rep['folders'])}: {rep['summary']}")
        if rep["problems"]:
            st.warning(f"{len(rep['problems'])} files skipped in this run (listed below).")

    allowed = cfg.indexable_roots(eng)
    if cfg.read_only:
        st.info("This app is read-only: start it with `lookalike ui --allow-write` (and `--allow-root DIR`) to "
                "build or update the index from the browser.")
    else:
        with st.form("build", border=True):
            st.markdown("**Build or update**")
            folder = st.text_input("Folder to index (on this computer)", key="index_folder",
                                   placeholder="/home/me/Pictures",
                                   help="Every image below it is indexed; a later run only embeds what changed.")
            model = None
            if eng is None:
                names = list(list_embedders())
                default = cfg.model if cfg.model in names else DEFAULT_EMBEDDER
                model = st.selectbox("Model for the new index", names,
                                     index=names.index(default) if default in names else 0, key="index_model")
            go = st.form_submit_button("Build / update index", type="primary")
        roots = state.roots(eng) if eng is not None else []
        again = st.button("Update all indexed folders", key="update_all", disabled=not roots,
                          help="Re-scan every folder already in the index: new, changed and deleted files.")
        if go:
            path = os.path.abspath(os.path.expanduser(folder.strip())) if folder.strip() else ""
            if not path:
                st.error("Enter a folder to index.")
            elif not os.path.isdir(path):
                st.error(f"{path}: not an existing folder.")
            elif os.path.realpath(path) == os.path.realpath(cfg.db):
                st.error(f"{path}: that is the index folder itself.")
            elif not is_inside(path, allowed):
                where = ", ".join(f"`{r}`" for r in allowed) or "no folder yet"
                st.error(f"{path}: outside the folders this app may index ({where}); start it with "
                         f"`lookalike ui --allow-root DIR` to allow another.")
            else:
                _start(cfg.db, [path], model)
        elif again and roots:
            _start(cfg.db, roots, None)

    if eng is None:
        if not st.session_state.get("index_error"):
            st.info(f"No index in `{cfg.db}` yet: choose a folder above to build one.")
        return
    _status(eng, allow_remove=not cfg.read_only)


def _remove_folder(eng, root: str) -> None:
    """Forget a folder's files (never touches them on disk)."""
    from lookalike.retrieval.engine import EngineError

    try:
        with state.engine_lock(str(eng.root)):
            n = eng.remove([root])
    except EngineError as exc:
        st.session_state["index_error"] = str(exc)
        return
    state.forget_engine()
    st.session_state["index_report"] = {"summary": f"removed {n} files from the index (nothing deleted on disk)",
                                        "problems": [], "folders": [root]}
    st.rerun()


def _status(eng, allow_remove: bool = False) -> None:
    with state.engine_lock(str(eng.root)):
        s = eng.status()
        errors = eng.errors()
    st.subheader("Index status")
    c = st.columns(5)
    c[0].metric("Images", s.images)
    c[1].metric("Files", s.files)
    c[2].metric("Duplicates", s.duplicates)
    c[3].metric("Skipped", s.skipped)
    c[4].metric("On disk", human_bytes(s.size_on_disk))
    st.caption(f"Index `{s.path}` · model **{s.model}** ({s.dim}-d) · index {s.index_type}"
               + (f" ({s.factory})" if s.factory else "") + f" · {s.vectors} vectors")
    if s.roots:
        st.markdown("**Indexed folders**")
        for i, r in enumerate(s.roots):
            c = st.columns([6, 1]) if allow_remove else [st.container()]
            c[0].markdown(f"`{r}`")
            if allow_remove and c[1].button("Remove", key=f"remove_root_{i}",
                                            help="Forget this folder's images (files on disk are not touched)"):
                _remove_folder(eng, r)
    st.subheader(f"Skipped files ({len(errors)})")
    if not errors:
        st.caption("None: every image file found was indexed.")
        return
    if s.skipped_by_reason:
        st.caption(" · ".join(f"{r}: {n}" for r, n in s.skipped_by_reason.items()))
    st.dataframe({"file": [p for p, _ in errors], "reason": [r for _, r in errors]}, hide_index=True,
                 key="skipped_table", width="stretch")
