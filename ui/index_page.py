"""Index page: build or update the index as a job of the server (progress, ETA, Cancel; it survives page changes,
reloads and other tabs); counts, the indexed folders (unfinished ones marked), Remove with a confirmation and Undo,
and the skipped files."""
from __future__ import annotations

import os

import streamlit as st

from lookalike.fsutil import human_bytes

from . import state
from .jobs import RUNNER, JobBusy
from .safety import is_inside

_PHASES = {"scanning": "Scanning folders", "hashing": "Hashing changed files", "embedding": "Embedding new images"}


def _start(db: str, folders: list[str], model: str | None, create: bool) -> None:
    """Start an indexing job on the server; the page (any page, any tab) follows it by the index folder."""
    conf = state.settings()
    try:
        RUNNER.start(db, folders, model=model, create=create, runtime=conf.runtime, precision=conf.precision)
    except JobBusy as exc:
        st.session_state["index_error"] = str(exc).split(";")[0] + "."
        return
    st.session_state.pop("index_error", None)
    st.rerun()


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f" · about {max(1, round(seconds))} s left"
    return f" · about {round(seconds / 60)} min left"


def job_line(job) -> str:
    """One line of a job's progress: phase, done / total, rate and ETA."""
    label = _PHASES.get(job.phase or "", job.phase or "Starting")
    if job.state == "cancelling":
        label = "Cancelling (committing what is embedded)"
    if job.total:
        rate = f" · {job.rate:.0f}/s" if job.rate else ""
        return f"{label}: {job.done} / {job.total}{rate}{_eta(job.eta_s)}"
    return f"{label}: {job.done} files found" if job.phase == "scanning" else f"{label}…"


def _job_panel(db: str) -> None:
    """The latest job on this index: live progress with Cancel while it runs, its outcome afterwards."""
    job = RUNNER.latest(db)
    if job is None:
        return
    running = job.running

    def panel() -> None:
        j = RUNNER.get(job.id) or job
        with st.container(border=True, key="index-job"):
            if j.running:
                frac = min(1.0, j.done / j.total) if j.total else 0.0
                st.progress(frac, text=job_line(j))
                st.caption("Runs on the server: you may leave this page, reload it or open another tab.")
                if j.state == "running" and st.button("Cancel", key=f"cancel-{j.id}",
                                                      help="Stop after the current batch; what is indexed so far is kept"):
                    RUNNER.cancel(j.id)
                    st.rerun(scope="fragment")
                return
            took = f" in {j.finished_at - j.started_at:.1f} s" if j.finished_at and j.started_at else ""
            where = ", ".join(os.path.basename(f.rstrip(os.sep)) or f for f in j.roots or [])
            if j.state == "done":
                st.success(f"{where}: {j.summary}")
            elif j.state == "cancelled":
                st.warning(f"{where}: {j.summary}. What was indexed is kept; the folder is marked unfinished until "
                           "an update over it ends.")
            else:
                st.error(f"{where}: indexing failed{took}: {j.error}")
            if j.skipped:
                st.warning(f"{len(j.skipped)} files skipped in this run (listed below).")
        if running and not j.running:  # it ended while shown: redraw the counts and folders
            st.rerun(scope="app")

    st.fragment(panel, run_every=1.0 if running else None)()


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
    _job_panel(cfg.db)
    _removal_notes(cfg.db)
    busy = RUNNER.active(cfg.db) is not None

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
            go = st.form_submit_button("Build / update index", type="primary", disabled=busy)
        roots = state.roots(eng) if eng is not None else []
        again = st.button("Update all indexed folders", key="update_all", disabled=not roots or busy,
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
                _start(cfg.db, [path], model, create=eng is None)
        elif again and roots:
            _start(cfg.db, roots, None, create=False)

    if eng is None:
        if not st.session_state.get("index_error") and not busy:
            st.info(f"No index in `{cfg.db}` yet: " + ("start the app with `lookalike ui --allow-write --allow-root "
                                                       "DIR` to build one here, or run `lookalike index DIR --db "
                                                       f"{cfg.db}`." if cfg.read_only else
                                                       "choose a folder above to build one."))
        return
    _status(eng, allow_remove=not cfg.read_only)


def _remove_folder(db: str, root: str) -> None:
    """(Callback of the confirmation) forget a folder's files; files on disk are never touched."""
    from lookalike.retrieval.engine import Engine, EngineError

    st.session_state.pop("index_confirm_remove", None)
    try:
        with Engine.open(db, create=False) as eng:
            n = eng.remove([root])
    except EngineError as exc:
        st.session_state["index_error"] = str(exc)
        return
    st.session_state["index_removed"] = {"root": root, "files": n}


def _undo_remove(db: str, root: str) -> None:
    """(Callback) index the removed folder again, as a background job."""
    st.session_state.pop("index_removed", None)
    conf = state.settings()
    try:
        RUNNER.start(db, [root], runtime=conf.runtime, precision=conf.precision)
    except JobBusy as exc:
        st.session_state["index_error"] = str(exc).split(";")[0] + "."


def _removal_notes(db: str) -> None:
    """The confirmation a Remove asks for, and the Undo of the last removal."""
    if root := st.session_state.get("index_confirm_remove"):
        with st.container(border=True, key="index-confirm"):
            st.warning(f"Remove `{root}` from the index? Its images are no longer searched; the files on disk are "
                       "not touched, and Undo indexes the folder again.")
            c1, c2 = st.columns(2)
            c1.button("Remove from the index", key="index_remove_yes", type="primary", on_click=_remove_folder,
                      args=(db, root), width="stretch")
            c2.button("Keep it", key="index_remove_no", width="stretch",
                      on_click=lambda: st.session_state.pop("index_confirm_remove", None))
    if done := st.session_state.get("index_removed"):
        with st.container(border=True, key="index-removed"):
            st.success(f"`{done['root']}`: removed {done['files']} files from the index (nothing deleted on disk).")
            st.button("Undo", key="index_remove_undo", on_click=_undo_remove, args=(db, done["root"]),
                      help="Index the folder again (a background job)")


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
        unfinished = set(s.unfinished or [])
        for i, r in enumerate(s.roots):
            c = st.columns([6, 1]) if allow_remove else [st.container()]
            c[0].markdown(f"`{r}`" + (" · :orange[**unfinished**: its last indexing run did not end; update it to "
                                      "finish]" if r in unfinished else ""))
            if allow_remove:
                c[1].button("Remove", key=f"remove_root_{i}", on_click=st.session_state.__setitem__,
                            args=("index_confirm_remove", r),
                            help="Forget this folder's images (asks first; files on disk are not touched)")
    st.subheader(f"Skipped files ({len(errors)})")
    if not errors:
        st.caption("None: every image file found was indexed.")
        return
    if s.skipped_by_reason:
        st.caption(" · ".join(f"{r}: {n}" for r, n in s.skipped_by_reason.items()))
    st.dataframe({"file": [p for p, _ in errors], "reason": [r for _, r in errors]}, hide_index=True,
                 key="skipped_table", width="stretch")
