"""Explore page: a 2-D map (PCA or t-SNE) of the index's embeddings, coloured by folder, label or cluster."""
from __future__ import annotations

import os

import numpy as np
import streamlit as st

from . import state

TSNE_MAX = 3000     # t-SNE: subsample above this many points
MAP_MAX = 20000     # PCA map: subsample above this many points (the chart stays responsive)
THUMBS_MAX = 48
NEIGHBOURS = 8      # results shown for a clicked point
PAD = 12            # pixels between the outermost points and the chart's edge
TABLEAU20 = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
             "#bab0ac", "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8", "#fabfd2",
             "#d7b5a6", "#79706e"]


def palette(n: int) -> list[str]:
    """``n`` distinct colours: Tableau 20 up to 20, else hues spaced by the golden angle at two lightnesses."""
    if n <= len(TABLEAU20):
        return TABLEAU20[:n]
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb((i * 0.381966) % 1.0, 0.42 if i % 2 else 0.62, 0.75)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of the rows of ``x``: openTSNE (Barnes-Hut, one thread) when installed, else scikit-learn's."""
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    try:
        from openTSNE import TSNE as OpenTSNE
    except ImportError:
        from sklearn.manifold import TSNE

        init = pca_2d(x)
        init = init / (init[:, 0].std() + 1e-12) * 1e-4
        return TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed,
                    max_iter=500).fit_transform(x.astype(np.float32))
    return np.asarray(OpenTSNE(n_components=2, perplexity=perplexity, initialization="pca", random_state=seed,
                               n_jobs=1, negative_gradient_method="bh", early_exaggeration_iter=100, n_iter=250,
                               verbose=False).fit(x.astype(np.float32)))


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of the rows of ``x``."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


@st.cache_data(max_entries=8, show_spinner="Projecting embeddings…")
def projection(db: str, stamp: tuple, method: str, max_points: int, seed: int = 0) -> dict:
    """{"ids", "x", "y", "path", "folder", "label", "total"} for up to ``max_points`` indexed images."""
    eng = state.get_engine(db)
    with state.engine_lock(db):
        ids, vecs = eng.vectors()
        roots = eng.store.roots()
    total = len(ids)
    if total > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))
        ids, vecs = ids[pick], vecs[pick]
    if method == "t-SNE" and len(ids) >= 5:
        xy = tsne_2d(vecs, seed)
    else:
        xy = pca_2d(vecs)
    with state.engine_lock(db):
        meta = eng.store.lookup(ids.tolist())
    paths = [meta[int(i)].paths[0] if int(i) in meta and meta[int(i)].paths else "" for i in ids]
    folders = [state.folder_of(p, roots) if p else "?" for p in paths]
    return {"ids": ids.tolist(), "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "path": paths,
            "name": [os.path.basename(p) for p in paths], "folder": folders,
            "label": [os.path.basename(f) or f for f in folders], "total": total}


@st.cache_data(max_entries=16, show_spinner=False)
def kmeans_labels(db: str, stamp: tuple, ids: tuple, n_clusters: int, seed: int = 0) -> list[int]:
    """KMeans cluster of each embedding (same order as ``ids``)."""
    from sklearn.cluster import KMeans

    eng = state.get_engine(db)
    with state.engine_lock(db):
        all_ids, vecs = eng.vectors()
    pos = {int(i): n for n, i in enumerate(all_ids)}
    x = vecs[[pos[i] for i in ids]]
    k = max(1, min(int(n_clusters), len(x)))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x).astype(int).tolist()


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported here (the core install leaves scikit-learn and openTSNE out)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def render() -> None:
    import altair as alt
    import pandas as pd

    _, eng = state.open_page("Explore")
    if eng is None:
        return
    db = str(eng.root)
    stamp = state.index_stamp(db)
    roots = state.roots(eng)

    has_sklearn, has_tsne = _installed("sklearn"), _installed("openTSNE") or _installed("sklearn")
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        method = st.radio("Projection", ["PCA", "t-SNE"] if has_tsne else ["PCA"], horizontal=True, key="ex_method",
                          help=f"t-SNE runs on at most {TSNE_MAX} randomly chosen images.")
    with c2:
        colour = st.radio("Colour by", ["folder", "label", "cluster"] if has_sklearn else ["folder", "label"],
                          horizontal=True, key="ex_colour",
                          help="folder: parent folder below the indexed root; label: the folder's name "
                               "(class folders such as cifar10/cat); cluster: KMeans on the embeddings.")
    with c3:
        n_clusters = st.slider("Clusters (KMeans)", 2, 20, 8, key="ex_k", disabled=colour != "cluster")

    if not (has_sklearn and has_tsne):
        st.caption("t-SNE and KMeans clusters need scikit-learn: pip install 'lookalike[train]'")
    data = projection(db, stamp, method, TSNE_MAX if method == "t-SNE" else MAP_MAX)
    if not data["ids"]:
        st.info("The index is empty: add a folder on the Index page.")
        return
    df = pd.DataFrame({k: data[k] for k in ("ids", "x", "y", "path", "name", "folder", "label")})
    if colour == "cluster":
        df["cluster"] = [f"cluster {c}" for c in kmeans_labels(db, stamp, tuple(data["ids"]), n_clusters)]
    group_col = colour
    shown = len(df)
    st.caption(f"{method} of {shown} of {data['total']} {eng.config.model} embeddings"
               + (" (random sample)" if shown < data["total"] else ""))

    groups = sorted(df[group_col].unique().tolist())
    sel = st.selectbox(f"Show images of one {group_col}", groups, index=0, key="ex_group")
    df["selected"] = df[group_col] == sel
    pick = alt.selection_point(name="pick", fields=["ids"], on="click")
    chart = (
        alt.Chart(df)
        .mark_circle(stroke="#222", cursor="pointer")
        .encode(
            x=alt.X("x:Q", axis=None, scale=alt.Scale(zero=False, nice=False, padding=PAD)),
            y=alt.Y("y:Q", axis=None, scale=alt.Scale(zero=False, nice=False, padding=PAD)),
            color=alt.Color(f"{group_col}:N", scale=alt.Scale(domain=groups, range=palette(len(groups))),
                            legend=alt.Legend(title=group_col, orient="bottom", columns=4, labelLimit=0,
                                              symbolLimit=0)),
            size=alt.condition(alt.datum.selected, alt.value(140), alt.value(45)),
            strokeWidth=alt.condition(alt.datum.selected, alt.value(1.2), alt.value(0.0)),
            opacity=alt.condition(alt.datum.selected, alt.value(1.0), alt.value(0.55)),
            tooltip=["name:N", "folder:N"] + (["cluster:N"] if group_col == "cluster" else []),
        )
        .add_params(pick)
        .properties(height=520)
    )
    st.caption("Click a point to search with its image.")
    event = st.altair_chart(chart, width="stretch", key="ex_chart", on_select="rerun", selection_mode="pick")
    clicked = [p.get("ids") for p in ((event or {}).get("selection", {}).get("pick") or []) if p.get("ids") is not None]
    if clicked:
        _neighbours(eng, int(clicked[0]), roots)

    members = df[df["selected"]]
    limit = st.slider("Thumbnails", 8, 240, THUMBS_MAX, 8, key="ex_thumbs")
    st.subheader(f"{sel}: {len(members)} images" + (f" (first {limit})" if len(members) > limit else ""))
    cols = st.columns(8)
    for n, (_, row) in enumerate(members.head(limit).iterrows()):
        with cols[n % 8]:
            thumb = state.thumbnail(row["path"], roots, px=160)
            if thumb is not None:
                st.image(thumb, caption=row["name"], width="stretch")
            else:
                st.caption(f"{row['name']} (not readable)")


def _neighbours(eng, image_id: int, roots: list[str]) -> None:
    """The indexed images nearest to a clicked point (its stored vector is the query)."""
    db = str(eng.root)
    with state.engine_lock(db):
        vec = next(iter(eng.store.iter_vectors([image_id])), (None, None))[1]
        hits = eng.search_vector(vec[0], k=NEIGHBOURS) if vec is not None else []
    if not hits:
        return
    st.subheader(f"Nearest to {os.path.basename(hits[0].path)}")
    cols = st.columns(NEIGHBOURS)
    for col, r in zip(cols, hits):
        with col:
            thumb = state.thumbnail(r.path, roots, px=160)
            if thumb is not None:
                st.image(thumb, width="stretch")
            st.caption(f"#{r.rank} · {r.score:.3f}  \n{os.path.basename(r.path)}")
