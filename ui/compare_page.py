"""Compare page: two images and their cosine similarity under each available embedder."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st

from . import state
from .safety import UnsafePathError, UploadTooLarge, check_upload
from .search_page import UPLOAD_TYPES


@st.cache_resource(max_entries=32, show_spinner=False)
def _embedder(name: str):
    """(embedder, None) or (None, reason): loaded once per process; offline only."""
    from lookalike.retrieval.runtime import load_embedder, torch_available

    try:
        if torch_available():
            from lookalike.retrieval.embedders import get_embedder

            return get_embedder(name), None
        return load_embedder(name, "openvino", "fp32"), None  # the core install: the shipped compiled models
    except Exception as exc:  # missing weights / checkpoint / package: reported, never fatal
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _gray(im) -> bool:
    """Whether an image has (almost) no colour."""
    x = np.asarray(im.convert("RGB").resize((64, 64)), np.float32)
    return float(np.abs(x - x.mean(axis=2, keepdims=True)).mean()) < 4.0


def _digit_like(im) -> bool:
    """Grayscale with a dark background, like MNIST's 28x28 handwritten digits."""
    return _gray(im) and float(np.asarray(im.convert("L").resize((28, 28)), np.float32).mean()) < 80.0


def domain_warning(name: str, images: list) -> str | None:
    """Why ``name``'s similarity may mean little for these images (its training data do not look like them)."""
    if "mnist" in name and not all(_digit_like(im) for im in images):
        return (f"{name} was trained on 28×28 handwritten digits (MNIST-sample) only; on other images its "
                "similarity says little (two unrelated photos can score near 1)")
    if "cifar10" in name and any(_gray(im) for im in images):
        return (f"{name} was trained on 32×32 colour photos of 10 classes (CIFAR-10-sample); grayscale images "
                "such as digits or documents lie outside that domain")
    return None


def similarities(a, b, names: list[str], on_step=None) -> list[dict]:
    """Cosine similarity of PIL images ``a`` and ``b`` under each embedder in ``names``."""
    rows = []
    for i, name in enumerate(names):
        if on_step:
            on_step(i, name)
        emb, reason = _embedder(name)
        if emb is None:
            rows.append({"embedder": name, "similarity": None, "dim": None, "ms": None, "note": reason})
            continue
        t0 = time.perf_counter()
        try:
            v = emb.embed_images([a, b])
        except Exception as exc:
            rows.append({"embedder": name, "similarity": None, "dim": None, "ms": None,
                         "note": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]})
            continue
        na, nb = (float(np.linalg.norm(x)) for x in v)
        sim = float(v[0] @ v[1] / max(na * nb, 1e-12))
        rows.append({"embedder": name, "similarity": round(sim, 4), "dim": int(v.shape[1]),
                     "ms": round((time.perf_counter() - t0) * 1000.0, 1),
                     "note": "outside its training domain" if domain_warning(name, [a, b]) else ""})
    return rows


def _picker(side: str, eng, roots: list[str], max_bytes: int):
    """One image chooser; returns (PIL image, name) or (None, None)."""
    src = st.radio("Source", ["Upload", "Indexed image"], horizontal=True, key=f"cmp_src_{side}")
    try:
        if src == "Upload":
            f = st.file_uploader(f"Image {side} (up to {max_bytes / 1024 / 1024:.3g} MB)", type=UPLOAD_TYPES,
                                 key=f"cmp_up_{side}")
            if f is None:
                return None, None
            data, name = check_upload(f.getvalue(), f.name, max_bytes, from_page=True), f.name
        else:
            paths = state.indexed_paths(eng) if eng is not None else []
            filt = st.text_input("Filter by name", key=f"cmp_filter_{side}")
            if filt:
                paths = [p for p in paths if filt.lower() in p.lower()]
            paths = paths[:1000]  # every option travels to the browser on each rerun
            if st.session_state.get(f"cmp_pick_{side}") and st.session_state[f"cmp_pick_{side}"] not in paths:
                paths = [st.session_state[f"cmp_pick_{side}"]] + paths
            p = st.selectbox(f"Image {side}", paths, index=None, key=f"cmp_pick_{side}",
                             format_func=lambda p: state.short_path(p, roots), placeholder="choose an indexed image")
            if not p:
                return None, None
            data, name = state.load_indexed(p, roots), p.rsplit("/", 1)[-1]
        from lookalike.indexer.loading import ImageLoadError, open_image_bytes

        try:
            return open_image_bytes(data, name=name), name
        except ImageLoadError as exc:
            st.error(f"Cannot read **{name}**: {exc.reason}")
            return None, None
    except (UnsafePathError, UploadTooLarge, ValueError) as exc:
        st.error(f"Cannot use this image: {exc}")
        return None, None


def render() -> None:
    from lookalike.retrieval.runtime import list_models as list_embedders

    cfg, eng = state.open_page("Compare", "How alike two images are under each embedder: cosine similarity of their "
                               "embeddings (1 = same direction).", require_index=False)
    roots = state.roots(eng) if eng is not None else []
    max_bytes = int(cfg.max_upload_mb * 1024 * 1024)

    ca, cb = st.columns(2, gap="large")
    with ca:
        a, name_a = _picker("A", eng, roots, max_bytes)
        if a is not None:
            st.image(a, caption=f"A: {name_a} ({a.width}×{a.height})", width=260)
    with cb:
        b, name_b = _picker("B", eng, roots, max_bytes)
        if b is not None:
            st.image(b, caption=f"B: {name_b} ({b.width}×{b.height})", width=260)

    names = list(list_embedders())
    if eng is not None and eng.config.model not in names:
        names.insert(0, eng.config.model)
    chosen = st.multiselect("Embedders", names, default=names, key="cmp_models",
                            help="Ensembles and trained models load on first use; those that cannot load offline "
                                 "are listed with the reason.")
    go = st.button("Compare", type="primary", key="cmp_go", disabled=a is None or b is None or not chosen)
    if a is None or b is None:
        st.info("Choose two images.")
        return
    key = (name_a, name_b, a.size, b.size, tuple(chosen), hash(a.tobytes()), hash(b.tobytes()))
    if go:
        bar = st.progress(0.0)
        rows = similarities(a, b, chosen, on_step=lambda i, n: bar.progress(i / len(chosen), text=f"{n}…"))
        bar.empty()
        st.session_state["cmp_result"] = (key, rows)
    saved = st.session_state.get("cmp_result")
    if not saved or saved[0] != key:
        return
    rows = saved[1]
    warnings = [w for w in (domain_warning(r["embedder"], [a, b]) for r in rows if r["similarity"] is not None) if w]
    if warnings:
        st.warning("Training domain does not fit these images:  \n" + "  \n".join(f"- {w}" for w in warnings))
    ok = [r for r in rows if r["similarity"] is not None]
    if ok:
        import altair as alt
        import pandas as pd

        df = pd.DataFrame(ok)
        st.altair_chart(
            alt.Chart(df).mark_bar().encode(
                x=alt.X("similarity:Q", scale=alt.Scale(domain=[min(0.0, float(df.similarity.min())), 1.0])),
                y=alt.Y("embedder:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)), tooltip=["embedder", "similarity", "dim", "ms"],
            ).properties(height=max(120, 28 * len(df))),
            width="stretch",
        )
    st.dataframe(rows, hide_index=True, key="cmp_table", width="stretch", height=36 * (len(rows) + 1) + 4,
                 column_config={"similarity": st.column_config.NumberColumn(format="%.4f"),
                                "ms": st.column_config.NumberColumn("ms (both images)")})
    skipped = [r for r in rows if r["similarity"] is None]
    if skipped:
        st.caption("Not available here: " + "; ".join(f"{r['embedder']} ({r['note']})" for r in skipped))
