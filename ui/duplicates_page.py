"""Duplicates page: groups of near-duplicate images side by side, marks of the ones to keep, the list to download.

The page never deletes, moves or renames a file: it only exports the list (CSV or JSON) for the user to act on.
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
from .original import show_original

GROUPS_PER_PAGE = 10
COLUMNS = 4


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


def render() -> None:
    from lookalike.retrieval.duplicates import DEFAULT_THRESHOLD

    cfg = state.settings()
    st.title("Duplicates")
    st.caption("Near-duplicates: resized, recompressed, cropped or lightly edited copies of one picture. "
               "Mark the files to keep and download the list; this page never deletes a file.")
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
    pages = (len(report.groups) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="dup_page") if pages > 1 else 1
    for g in report.groups[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        _group(g, roots)


def _group(g, roots: list[str]) -> None:
    with st.container(border=True, key=f"dup-group-{g.id}"):
        scores = [f.copy_score for f in g.files if not f.keep and f.copy_score is not None]
        head = f"copy score ≥ {min(scores):.2f}" if scores else f"similarity ≥ {g.min_similarity:.3f}"
        st.markdown(f"**Group {g.id}** · {len(g.files)} files · {head}")
        for i, f in enumerate(g.files):
            if i % COLUMNS == 0:
                cols = st.columns(COLUMNS)
            with cols[i % COLUMNS]:
                thumb = state.thumbnail(f.path, roots)
                if thumb is not None:
                    st.image(thumb, width="stretch")
                else:
                    st.caption("(file not readable)")
                st.markdown(f"`{os.path.basename(f.path)}`  \n{f.width}×{f.height} · {human_bytes(f.size)} · "
                            + ("suggested keep" if f.keep else "exact copy" if f.exact else
                               f"copy score {f.copy_score:.2f}" if f.copy_score is not None else
                               f"similarity {f.similarity:.3f}")
                            + f"  \n{state.folder_of(f.path, roots)}")
                k1, k2 = st.columns(2)
                k1.checkbox("Keep", value=f.keep, key=keep_key(f.path))
                if k2.button("Original", key="orig-" + keep_key(f.path)):
                    show_original(f.path, roots)
