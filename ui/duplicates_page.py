"""Duplicates page: groups of near-duplicate images side by side, marks of the ones to keep, the list to download,
and (with ``--allow-write``) moving the files not kept to a folder or the system trash, with an undo.

Each Keep box is a fragment: a click reruns that box only. Large groups show their first files and say how many
there are. The page never deletes a file; a move is confirmed first and logged (``lookalike.retrieval.dedupe``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import streamlit as st

from lookalike.fsutil import human_bytes

from . import state
from .original import open_viewer

GROUPS_PER_PAGE = 10
COLUMNS = 4
LARGE_GROUP = 12  # a group with more files is flagged, and only its first LARGE_GROUP files are drawn until asked


@st.cache_data(max_entries=8, show_spinner="Looking for near-duplicates…")
def _report(db: str, stamp: tuple, threshold: float):
    """The duplicate groups of the index at ``threshold`` (once per index state and threshold)."""
    from lookalike.retrieval.duplicates import find_duplicates

    eng = state.get_engine(db)
    with state.engine_lock(db):
        return find_duplicates(eng, threshold=threshold)


def keep_key(path: str) -> str:
    """The session-state key of a file's "keep" checkbox."""
    return "keep-" + hashlib.sha1(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def marks(report) -> dict[str, bool]:
    """path -> keep, from the page's checkboxes (the suggestion for files not shown yet)."""
    return {f.path: bool(st.session_state.get(keep_key(f.path), f.keep)) for g in report.groups for f in g.files}


def export_rows(report, keep: dict[str, bool]) -> list[dict]:
    """One row per file: the user's keep mark beside the suggested one."""
    files = [f for g in report.groups for f in g.files]  # the order of report.rows()
    return [{**row, "keep": int(keep.get(f.path, f.keep)), "suggested_keep": int(f.keep)}
            for f, row in zip(files, report.rows())]


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["group", "keep", "path"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _reset(report) -> None:
    for g in report.groups:
        for f in g.files:
            st.session_state.pop(keep_key(f.path), None)


def _page_nav(pages: int) -> int:
    """Previous / Next and "page i of n"; returns the page (1-based)."""
    page = min(max(1, int(st.session_state.get("dup_page_no", 1))), pages)
    if pages <= 1:
        return 1
    c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="center")
    if c1.button("← Previous", key="dup_prev", disabled=page <= 1, width="stretch"):
        page -= 1
    if c3.button("Next →", key="dup_next", disabled=page >= pages, width="stretch"):
        page += 1
    st.session_state["dup_page_no"] = page
    c2.markdown(f"<div style='text-align:center'>Page {page} of {pages}</div>", unsafe_allow_html=True)
    return page


def _actions(cfg, db: str, report, roots: list[str]) -> None:
    """Plans to download, and (writable app) moving the files not kept, confirmed first, with an undo."""
    from lookalike.retrieval.dedupe import ActionError, plan_actions, plan_script

    keep = marks(report)
    with st.expander("Act on the files not kept (move to a folder or the trash, or download a plan)",
                     expanded=False):
        how = st.radio("What to do with them", ["Move to a folder", "Move to the system trash"], key="dup_how",
                       horizontal=True)
        action = "trash" if how.endswith("trash") else "move"
        dest = None
        if action == "move":
            dest = st.text_input("Folder to move them to (outside the indexed folders)", key="dup_dest",
                                 placeholder="/home/me/duplicates")
        try:  # without a folder yet, the files are counted as for the trash (the same files, no destinations)
            plan = plan_actions(report, action if dest or action == "trash" else "trash", dest.strip() if dest else None,
                                roots=roots, keep=keep)
        except ActionError as exc:
            st.error(str(exc))
            return
        st.caption(f"{len(plan.items)} files ({human_bytes(plan.bytes)}) not marked keep; a group is never emptied.")
        c1, c2 = st.columns(2)
        c1.download_button("Download plan (shell script)", plan_script(plan), file_name="duplicates-plan.sh",
                           mime="text/x-shellscript", key="dup_plan_sh", disabled=action == "move" and not dest)
        c2.download_button("Download plan (JSON)", json.dumps(plan.to_dict(), indent=2),
                           file_name="duplicates-plan.json", mime="application/json", key="dup_plan_json",
                           disabled=action == "move" and not dest)
        if cfg.read_only:
            st.caption("Moving files needs a writable app (`lookalike ui --allow-write`); the plans above work anyway.")
            return
        ready = bool(plan.items) and (action == "trash" or bool(dest))
        sure = st.checkbox(f"Yes, move these {len(plan.items)} files "
                           + ("to the system trash" if action == "trash" else "to that folder"), key="dup_sure",
                           disabled=not ready)
        st.button(f"Move {len(plan.items)} files", key="dup_apply", type="primary", disabled=not (ready and sure),
                  on_click=_apply, args=(db, report, plan.action, plan.dest, roots))


def _apply(db: str, report, action: str, dest: str | None, roots: list[str]) -> None:
    """(Button callback) carry out the plan with an undo log; the message and the log go to the session.

    The plan is made again here from the Keep boxes as they are now: a Keep click reruns only its box, so the
    plan drawn with the button may predate it."""
    from lookalike.retrieval.dedupe import ActionError, apply_plan, plan_actions
    from lookalike.retrieval.engine import Engine, EngineError

    try:
        plan = plan_actions(report, action, dest, roots=roots, keep=marks(report))
        with Engine.open(db, create=False) as eng:
            res = apply_plan(eng, plan)
    except (ActionError, EngineError, OSError) as exc:
        st.session_state["dup_error"] = str(exc)
        return
    where = "to the system trash" if plan.action == "trash" else f"to `{plan.dest}`"
    n = len(res.done)
    msg = f"Moved {n} file{'s' if n != 1 else ''} {where}; the index no longer lists them. Undo log: `{res.log}`."
    if res.skipped:
        msg += f" {len(res.skipped)} left in place: " + "; ".join(f"{os.path.basename(p)}: {r}" for p, r in res.skipped[:3])
    st.session_state["dup_done"] = {"message": msg, "log": res.log}
    st.session_state["dup_sure"] = False


def _undo(db: str, log: str) -> None:
    """(Button callback) put back what the undo log ``log`` moved, and index it again."""
    from lookalike.retrieval.dedupe import ActionError, undo
    from lookalike.retrieval.engine import Engine, EngineError

    try:
        with Engine.open(db, create=False) as eng:
            res = undo(eng, log)
    except (ActionError, EngineError) as exc:
        st.session_state["dup_error"] = str(exc)
        return
    st.session_state["dup_done"] = None
    st.session_state["dup_undone"] = (f"Put back {len(res.done)} files and indexed them again"
                                      + (f"; {len(res.skipped)} could not be: " + "; ".join(
                                          f"{os.path.basename(p)}: {r}" for p, r in res.skipped[:3])
                                         if res.skipped else "."))


def render() -> None:
    from lookalike.retrieval.duplicates import DEFAULT_THRESHOLD

    cfg = state.settings()
    st.title("Duplicates")
    st.caption("Near-duplicates: resized, recompressed, cropped or lightly edited copies of one picture. "
               "Mark the files to keep; download the list or a plan, or move the rest away (with an undo). "
               "This page never deletes a file.")
    if undone := st.session_state.pop("dup_undone", None):
        st.success(undone)
    if err := st.session_state.pop("dup_error", None):
        st.error(err)
    if cfg.db and (done := st.session_state.get("dup_done")):
        with st.container(border=True, key="dup-done"):
            st.success(done["message"])
            st.button("Undo", key="dup_undo", help="Put every moved file back where it was and index it again",
                      on_click=_undo, args=(cfg.db, done["log"]))
    eng = state.engine_or_message(cfg.db)
    if eng is None:
        return
    db = str(eng.root)
    roots = state.roots(eng)
    from lookalike.retrieval.calibration import load_scorer

    scorer = load_scorer(eng.model_name, eng.dim)
    if scorer is not None:
        threshold = st.slider("Copy score threshold", 0.05, 1.00, round(float(scorer.threshold), 2), 0.01,
                              key="dup_threshold",
                              help=f"The calibrated copy score two images need (default {scorer.threshold:.2f}, the "
                                   "line search uses for 'copy'); higher finds fewer, surer copies.")
    else:
        threshold = st.slider("Similarity threshold", 0.70, 1.00, float(DEFAULT_THRESHOLD), 0.01, key="dup_threshold",
                              help=f"Cosine similarity that links two images (default {DEFAULT_THRESHOLD}, chosen on a "
                                   "benchmark of edited photos); higher finds fewer, closer copies.")
    report = _report(db, state.index_stamp(db), float(threshold))
    if not report.groups:
        st.info(f"No near-duplicates among {report.images} images at {report.score} {threshold:.2f}.")
        return
    rows = export_rows(report, marks(report))
    drop = sum(r["size"] for r in rows if not r["keep"])
    n = len(report.groups)
    st.caption(f"{n} group{'s' if n != 1 else ''}, {report.files} files among {report.images} images "
               f"({report.method}, {report.seconds:.1f} s). Files not marked keep: "
               f"{sum(1 for r in rows if not r['keep'])}, {human_bytes(drop)}.")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download CSV", _csv(rows), file_name="duplicates.csv", mime="text/csv", key="dup_csv")
    c2.download_button("Download JSON", json.dumps({"threshold": report.threshold, "files": rows}, indent=2),
                       file_name="duplicates.json", mime="application/json", key="dup_json")
    c3.button("Reset to suggestions", key="dup_reset", on_click=_reset, args=(report,))
    _actions(cfg, db, report, roots)
    pages = (len(report.groups) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = _page_nav(pages)
    for g in report.groups[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        _group(g, roots)


def _keep_box(f) -> None:
    st.checkbox("Keep", value=f.keep, key=keep_key(f.path))


def _group(g, roots: list[str]) -> None:
    with st.container(border=True, key=f"dup-group-{g.id}"):
        scores = [f.copy_score for f in g.files if not f.keep and f.copy_score is not None]
        head = f"copy score ≥ {min(scores):.2f}" if scores else f"similarity ≥ {g.min_similarity:.3f}"
        exact = sum(1 for f in g.files if f.exact and not f.keep)
        st.markdown(f"**Group {g.id}** · {len(g.files)} files · {head}"
                    + (f" · {exact} exact cop{'y' if exact == 1 else 'ies'} (identical bytes)" if exact else ""))
        files = g.files
        if len(g.files) > LARGE_GROUP:
            st.warning(f"A large group: {len(g.files)} files. Look through it before moving anything; a large group "
                       "often holds similar pictures rather than copies (raise the threshold to split it).")
            if not st.toggle(f"Show all {len(g.files)} files", key=f"dup-all-{g.id}"):
                files = g.files[:LARGE_GROUP]
        for i, f in enumerate(files):
            if i % COLUMNS == 0:
                cols = st.columns(COLUMNS)
            with cols[i % COLUMNS]:
                state.show_thumbnail(f.path, roots, f.width, f.height)  # loaded as it nears the screen
                st.markdown(f"`{os.path.basename(f.path)}`  \n{f.width}×{f.height} · {human_bytes(f.size)} · "
                            + ("suggested keep" if f.keep else "**exact copy**" if f.exact else
                               f"copy score {f.copy_score:.2f}" if f.copy_score is not None else
                               f"similarity {f.similarity:.3f}")
                            + f"  \n{state.folder_of(f.path, roots)}")
                k1, k2 = st.columns(2)
                with k1:
                    st.fragment(_keep_box)(f)  # a Keep click reruns this box only
                if k2.button("Original", key="orig-" + keep_key(f.path)):
                    open_viewer([x.path for x in files], i, roots)
