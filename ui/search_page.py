"""Search page: a query from an upload, the camera or the index; a grid of results; a noisy-query panel."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace

import streamlit as st
from PIL import Image

from lookalike.retrieval.runtime import torch_available

from . import state
from .original import open_viewer
from .safety import UnsafePathError, UploadTooLarge, check_upload

UPLOAD_TYPES = ["png", "jpg", "jpeg", "jpe", "jfif", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif"]
METHOD_LABELS = {"auto": "auto", "ddpm": "DDPM", "ddim": "DDIM", "classical": "classical"}
NOISY_MAX_SIDE = 512  # the noise panel works on a copy no larger than this (classical denoising is O(pixels))
GRID_COLUMNS = 4
MAX_PICK_OPTIONS = 1000
try:  # above this estimated noise σ a query is denoised (the level measured on the development photos)
    from lookalike.retrieval.denoise.query import AUTO_FUSE_SIGMA as AUTO_SIGMA
except ImportError:  # no denoising here: the toggle says so
    AUTO_SIGMA = 0.2


# ---------------------------------------------------------------------------- query callbacks
def _set_query(q: dict) -> None:
    st.session_state["query"] = q
    st.session_state["res_page"] = 1


def _on_upload() -> None:
    f = st.session_state.get("q_upload")
    if f is not None:
        _set_query({"kind": "upload", "name": f.name, "data": f.getvalue()})
    elif (st.session_state.get("query") or {}).get("kind") == "upload":  # removed: its results go too
        st.session_state.pop("query", None)


def _on_paste() -> None:
    v = st.session_state.get("q_paste")
    files = list(getattr(v, "files", None) or [])
    if files:
        _set_query({"kind": "paste", "name": files[0].name or "pasted image", "data": files[0].getvalue()})


def _on_camera() -> None:
    f = st.session_state.get("q_camera")
    if f is not None:
        _set_query({"kind": "camera", "name": "camera photo", "data": f.getvalue()})


def _on_pick() -> None:
    p = st.session_state.get("q_pick")
    if p:
        _set_query({"kind": "indexed", "name": os.path.basename(p), "path": p})


def _use_result(path: str) -> None:
    _set_query({"kind": "indexed", "name": os.path.basename(path), "path": path})


# ---------------------------------------------------------------------------- helpers
def _limit_side(im: Image.Image, side: int) -> Image.Image:
    if max(im.size) <= side:
        return im
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


def _query_bytes(q: dict, roots: list[str], max_bytes: int) -> bytes:
    """The bytes behind a query; raises UnsafePathError / UploadTooLarge / ValueError with a user message."""
    if q["kind"] == "indexed":
        return state.load_indexed(q["path"], roots)
    return check_upload(q["data"], q.get("name", "upload"), max_bytes, from_page=True)


@st.cache_data(max_entries=8, show_spinner=False)
def _folders(db: str, stamp: tuple) -> dict[str, int]:
    """Folder (relative to its root) -> indexed files in it or below it."""
    eng = state.get_engine(db)
    roots = state.roots(eng)
    out: dict[str, int] = {}
    for p in state.indexed_paths(eng):
        parts = state.folder_of(p, roots).split(os.sep)
        for i in range(1, len(parts) + 1):
            key = os.sep.join(parts[:i])
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def in_folder(result, folder: str, roots: list[str]) -> bool:
    """Whether one of the result's paths lies in ``folder`` (relative to its root) or below it."""
    return any((f := state.folder_of(p, roots)) == folder or f.startswith(folder + os.sep) for p in result.paths)


@st.cache_data(max_entries=64, show_spinner=False)
def _run_search(db: str, stamp: tuple, qbytes: bytes, k: int, min_score: float, exclude_self: bool,
                denoise: str | None, sigma, n_samples: int):
    """Search (and denoise) once per distinct input; returns (SearchResults, milliseconds)."""
    eng = state.get_engine(db)
    t0 = time.perf_counter()
    with state.engine_lock(db):
        res = eng.search(qbytes, k=k, min_score=min_score, exclude_self=exclude_self,
                         denoise=denoise, sigma=sigma, n_samples=n_samples)
    return res, (time.perf_counter() - t0) * 1000.0


# ---------------------------------------------------------------------------- page
def render() -> None:
    from lookalike.retrieval.engine import EngineError

    cfg, eng = state.open_page("Search")
    if eng is None:
        return
    db = str(eng.root)
    roots = state.roots(eng)
    max_bytes = int(cfg.max_upload_mb * 1024 * 1024)

    left, right = st.columns([3, 2], gap="large")
    with left:
        t_up, t_paste, t_cam, t_idx = st.tabs(["Upload", "Paste", "Camera", "Indexed image"])
        with t_up:
            # no type filter: a file of the wrong kind reaches the page's own check, whose reason is shown inline
            # (a filtered one would only be a red chip with the reason in a tooltip)
            st.file_uploader(f"Query image (up to {cfg.max_upload_mb:g} MB)", key="q_upload",
                             on_change=_on_upload)
        with t_paste:
            st.chat_input("Paste an image here (Ctrl+V), then press Enter", accept_file=True, file_type=UPLOAD_TYPES,
                          key="q_paste", on_submit=_on_paste)
        with t_cam:
            if st.toggle("Use the camera", key="q_cam_on", help="The browser asks for permission first."):
                st.camera_input("Take a photo", key="q_camera", on_change=_on_camera)
        with t_idx:
            paths = state.indexed_paths(eng)
            filt = st.text_input("Filter by name", key="q_filter", placeholder="e.g. cat, photos/")
            opts = [p for p in paths if filt.lower() in p.lower()] if filt else paths
            label = f"Indexed image ({len(opts)} of {len(paths)})"
            if len(opts) > MAX_PICK_OPTIONS:  # every option travels to the browser on each rerun
                label = f"Indexed image (first {MAX_PICK_OPTIONS} of {len(opts)}: type in the filter to narrow)"
                opts = opts[:MAX_PICK_OPTIONS]
            picked = st.session_state.get("q_pick")
            if picked and picked not in opts:
                opts = [picked] + opts
            st.selectbox(label, opts, index=None, key="q_pick",
                         format_func=lambda p: state.short_path(p, roots), on_change=_on_pick,
                         placeholder="choose an indexed image")
    with right:
        ss = st.session_state
        with st.expander(f"Options: {ss.get('k', 12)} per page · {ss.get('q_folder') or 'All folders'} · "
                         f"minimum score {ss.get('min_score', 0.0):.2f}", key="search_options"):  # stays open
            k = st.slider("Results per page", 1, 48, 12, key="k")
            folders = _folders(db, state.index_stamp(db))
            folder = st.selectbox("Folder", ["All folders", *folders], key="q_folder",
                                  format_func=lambda f: f if f == "All folders" else f"{f} ({folders[f]})",
                                  help="Only results with a file in this folder or below it.")
            min_score = st.slider("Minimum score", -1.0, 1.0, 0.0, 0.05, key="min_score",
                                  help="Cosine similarity; results below it are hidden.")
            exclude_self = st.checkbox("Hide the query itself when it is indexed", key="exclude_self",
                                       help="Hidden from the grid only: the other results keep their scores.")
            hide_noise = st.checkbox("Hide results no closer than unrelated pictures", value=True, key="hide_noise",
                                     help="The noise tail: results whose similarity is below how close a set of "
                                          "unrelated pictures comes to this query. Copies are always shown.")
            copies_only = st.checkbox("Copies only", key="copies_only",
                                      help="Only results the calibrated copy score calls a copy of the query "
                                           "(edited, resized, recompressed or cropped copies).")
        preview = st.container(key="query-preview")
    n_images = len(eng.index) if eng.index is not None else 0
    pages = max(1, -(-(n_images if folder == "All folders" else min(n_images, folders.get(folder, 0))) // int(k)))
    if st.session_state.get("res_page", 1) > pages:  # fewer pages since the last run (larger pages, a folder)
        st.session_state["res_page"] = pages
    page = max(1, int(st.session_state.get("res_page", 1)))
    # phones: the query preview gives its place to the first result
    st.html("<style>@media (max-width: 640px) { .st-key-query-preview { display: none; }"
            " .st-key-results [data-testid=stHorizontalBlock] { flex-wrap: wrap; gap: 0.5rem; }"
            " .st-key-results [data-testid=stColumn] { min-width: calc(50% - 0.25rem) !important;"
            " flex: 1 1 calc(50% - 0.25rem) !important; width: calc(50% - 0.25rem) !important; } }</style>")

    noise_sigma, den = _noise_controls()

    q = st.session_state.get("query")
    if not q:
        st.info("Upload an image, take one with the camera, or pick an indexed image to search.")
        return
    try:
        raw = _query_bytes(q, roots, max_bytes)
        clean, _ = eng.load_query(raw)
    except (UnsafePathError, UploadTooLarge, ValueError) as exc:
        st.error(f"Cannot use this query: {exc}")
        return
    except EngineError as exc:
        reason = str(exc).removeprefix("query: ")
        st.error(f"Cannot read **{q.get('name', 'the image')}**: {reason}. Try a JPEG, PNG, WebP, BMP, GIF or TIFF image.")
        return

    qbytes = raw
    noisy = None
    if noise_sigma > 0 and not torch_available():  # the seeded noise is torch's: the core install has none
        st.warning("Adding noise needs torch: pip install 'lookalike[train]'. Searching the image as it is.")
        noise_sigma = 0.0
    if noise_sigma > 0:
        from lookalike.retrieval.denoise.noise import add_noise_image

        noisy = add_noise_image(_limit_side(clean, NOISY_MAX_SIDE), noise_sigma, den["seed"])
    # the noise of what is searched is estimated on every query; above the level measured on the development
    # photos the query is denoised (method auto) unless the user chose otherwise
    estimated = _noise_level(hashlib.sha256(qbytes).hexdigest() + f"-{noise_sigma}-{den['seed']}",
                             noisy if noisy is not None else clean) if den["auto"] and not den["on"] else None
    auto_on = estimated is not None and estimated >= AUTO_SIGMA
    if auto_on:
        den = {**den, "on": True, "method": "auto", "sigma": "auto", "samples": 1}
    if noisy is not None or den["on"]:
        noisy = noisy if noisy is not None else _limit_side(clean, NOISY_MAX_SIDE)
        qbytes = state.image_to_png(noisy)

    with preview:
        st.image(clean, caption=f"Query: {q.get('name', '')} ({clean.width}×{clean.height})", width=220)

    need = int(k) * page
    # the query's own indexed copy is hidden here, not by the search: the other results keep the scores they have
    # with it shown (the copy score's collection closeness counts every neighbour)
    self_id = eng.store.id_for_sha(hashlib.sha256(raw).hexdigest()) if exclude_self else None
    want = need + 1 + (self_id is not None)  # one more than the page: is there a next page?
    k_search = want if folder == "All folders" else min(max(n_images, 1), want * 4)
    t0 = time.perf_counter()
    try:
        with st.spinner("Denoising and searching…" if den["on"] else "Searching…"):
            while True:  # a folder filter: widen the search until enough results are in the folder
                res, ms = _run_search(db, state.index_stamp(db), qbytes, k_search, float(min_score),
                                      False, den["method"] if den["on"] else None, den["sigma"],
                                      int(den["samples"]))
                hits = [replace(r, rank=i + 1) for i, r in enumerate(r for r in res if r.id != self_id)]
                hits = hits if folder == "All folders" else [r for r in hits if in_folder(r, folder, roots)]
                if copies_only:
                    hits = [r for r in hits if r.match == "copy"]
                # copies are found among the best candidates of the first search: no widening for them
                if copies_only or len(hits) > need or k_search >= n_images or len(res) < k_search:
                    break
                k_search = min(n_images, k_search * 4)
    except EngineError as exc:
        st.error(str(exc))
        return
    except ValueError as exc:  # DenoiseError and other bad inputs: one line, no stack trace
        st.error(f"Cannot denoise this query: {exc}")
        return

    wall = (time.perf_counter() - t0) * 1000.0
    if auto_on:
        st.info(f"The query looks noisy (estimated noise σ ≈ {estimated:.2f}, above {AUTO_SIGMA:g}, the level measured "
                "on the development photos), so it was denoised before searching (method auto). Open **Noisy query** "
                "to see what was searched, or untick *Denoise automatically* there.", icon=":material/auto_fix_high:")
    if noisy is not None:
        _show_noise_panel(noisy, clean, noise_sigma, res)

    hidden = 0
    if hide_noise and res.background is not None:
        kept = [r for r in hits if r.match == "copy" or r.score > res.background]
        hidden, hits = len(hits) - len(kept), kept
    has_next = len(hits) > need
    shown = hits[need - int(k):need]
    where = "" if folder == "All folders" else f" in {folder}"
    took = (f"in {wall:.0f} ms" if wall >= 0.5 * ms else f"(shown again; the search took {ms:.0f} ms)")
    st.caption(f"{len(shown)} results{where} from {n_images} images {took} ({eng.config.model})"
               + (f" · page {page}, ranks {shown[0].rank}–{shown[-1].rank}" if page > 1 and shown else "")
               + (f" · consistency of the denoised samples' neighbours {res.consistency:.2f}"
                  if res.consistency is not None else ""))
    if hidden and not has_next:
        st.caption(f"{hidden} weaker results hidden: no closer to the query than unrelated pictures come "
                   f"(similarity {res.background:.2f}). Untick *Hide results no closer than unrelated pictures* in "
                   "Options to see them.")
    _results_grid(shown, roots)
    if page > 1 or has_next:
        c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="center")
        c1.button("← Previous", key="res_prev", disabled=page <= 1, on_click=_turn, args=(-1,), width="stretch")
        c2.markdown(f"<div style='text-align:center'>Page {page}</div>", unsafe_allow_html=True)
        c3.button("Next →", key="res_next", disabled=not has_next, on_click=_turn, args=(1,), width="stretch")


def _turn(step: int) -> None:
    st.session_state["res_page"] = max(1, int(st.session_state.get("res_page", 1)) + step)


@st.cache_data(max_entries=64, show_spinner=False)
def _noise_level(key: str, _image: Image.Image) -> float | None:
    """The estimated noise σ of the image searched ([-1, 1] scale; once per image), None when it cannot be told.

    A wavelet estimate of the centre 128 px (a few ms) screens first: below half the line the query is clean (at
    σ 0.2 the wavelet estimate reads 0.18-0.20 on photos and small crops), and the learned estimate, which sets the
    line and costs about 100 ms on a busy CPU, runs only for the others."""
    try:
        if not torch_available():  # the core install: the shipped noise estimator on OpenVINO, no wavelet screen
            from lookalike.retrieval.denoise.light import estimate_sigma as light_sigma

            return float(light_sigma(_image))
        from lookalike.retrieval.denoise import estimate_sigma

        w, h = _image.size
        c = 128
        centre = _image.crop((max(0, (w - c) // 2), max(0, (h - c) // 2), min(w, (w + c) // 2), min(h, (h + c) // 2)))
        quick = float(estimate_sigma(centre, "wavelet"))
        if quick < AUTO_SIGMA / 2:
            return quick
        return float(estimate_sigma(_image, "auto"))
    except Exception:  # noqa: BLE001 - no estimate: the query is searched as it is
        return None


def match_words(r) -> str:
    """A result's closeness in words, from the calibrated copy score: "copy" at the copy line, "very similar" for a
    plausible copy (the score search ranks by), else "similar"."""
    from lookalike.retrieval.searcher import RANK_BY_COPY

    if r.match == "copy":
        return "copy"
    if r.copy_score is not None and r.copy_score >= RANK_BY_COPY:
        return "very similar"
    return "similar"


def _noise_controls() -> tuple[float, dict]:
    with st.expander("Noisy query", expanded=bool(st.session_state.get("noise_sigma", 0) or st.session_state.get("den_on"))):
        c1, c2 = st.columns(2)
        with c1:
            sigma = st.slider("Add Gaussian noise, σ", 0.0, 1.0, 0.0, 0.05, key="noise_sigma",
                              help="For demonstration: y = x + σ·n on the [-1, 1] pixel scale; 0 = no noise.")
            seed = st.number_input("Noise seed", 0, 10_000, 0, key="noise_seed")
        with c2:
            auto = st.checkbox("Denoise automatically when the query looks noisy", value=True, key="den_auto",
                               help=f"The noise of every query is estimated; above σ {AUTO_SIGMA:g} (the level "
                                    "measured on the development photos) it is denoised with method auto.")
            on = st.toggle("Denoise before searching", key="den_on")
            method = st.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, horizontal=True,
                              key="den_method", disabled=not on,
                              help="auto: DDIM with the DDPM matching the image (28×28 gray, 32×32 colour), else classical.")
            mode = st.radio("Noise level", ["auto", "manual"], horizontal=True, key="den_sigma_mode", disabled=not on)
            manual = st.slider("Denoise σ", 0.0, 1.0, 0.3, 0.05, key="den_sigma", disabled=not on or mode == "auto")
            samples = st.slider("Samples", 1, 8, 1, key="den_samples", disabled=not on,
                                help="Several denoised samples: search with their mean embedding.")
    return float(sigma), {"on": bool(on), "auto": bool(auto), "method": method, "sigma": "auto" if mode == "auto" else float(manual),
                          "samples": int(samples), "seed": int(seed)}


def _show_noise_panel(noisy: Image.Image, clean: Image.Image, added: float, res) -> None:
    d = res.denoise
    cols = st.columns(3)
    with cols[0]:
        st.image(noisy, caption=f"Noisy query (σ added = {added:.2f})" if added > 0 else "Query as searched (no noise added)",
                 width="stretch")
    with cols[1]:
        if d is not None and d.method in ("none", "lowfreq"):  # auto on a photo: searched as it is
            st.image(noisy, caption="Searched: the query as it is, not denoised "
                                    + (f"(auto on a photo: σ ≈ {d.sigma:.2f}, the low-frequency channel weighted "
                                       f"{res.lowfreq_weight:g})" if d.method == "lowfreq" else
                                       f"(auto on a photo: σ ≈ {d.sigma:.2f}, too little noise to clean)"),
                     width="stretch")
        elif d is not None:
            how = "estimated" if d.sigma_estimated else "manual"
            st.image(d.image, caption=f"Denoised: {d.method}, σ used = {d.sigma:.3f} ({how}), {d.ms:.0f} ms",
                     width="stretch")
            if d.model:
                st.caption(f"model: {d.model}")
            if d.fallback_reason:
                st.caption(f"note: {d.fallback_reason}")
        else:
            st.info("Denoising is off: the noisy image is searched as it is.")
    with cols[2]:
        if added > 0:
            st.image(_limit_side(clean, NOISY_MAX_SIDE), caption="Query before the added noise", width="stretch")


def _results_grid(res, roots: list[str]) -> None:
    if not len(res):
        st.warning("No result above the minimum score.")
        return
    with st.container(key="results"):
        for i, r in enumerate(res):
            if i % GRID_COLUMNS == 0:  # one row of columns at a time keeps the rows aligned
                cols = st.columns(GRID_COLUMNS)
            with cols[i % GRID_COLUMNS]:
                with st.container(border=True, key=f"result-{r.rank}"):
                    state.show_thumbnail(r.path, roots, r.width, r.height, lazy=False)  # the whole page at once
                    name = os.path.basename(r.path)
                    words = match_words(r)
                    st.markdown(f"**#{r.rank}** · **{words}** · {r.score:.3f}  \n`{name}`  \n"
                                f"{r.width}×{r.height} · {state.folder_of(r.path, roots)}",
                                help=None if r.copy_score is None else
                                f"copy score {r.copy_score:.2f} (calibrated: {words}); similarity {r.score:.3f}")
                    if len(r.paths) > 1:
                        with st.popover(f"+{len(r.paths) - 1} cop{'y' if len(r.paths) == 2 else 'ies'}",
                                        width="stretch"):
                            st.caption("The same picture (identical bytes) under these names:")
                            for p in r.paths:
                                st.markdown(f"`{state.short_path(p, roots)}`")
                    st.button("Search with this", key=f"use-{r.rank}", on_click=_use_result, args=(r.path,),
                              width="stretch", help="Search with this picture as the query")
                    if st.button("Open original", key=f"orig-{r.rank}", width="stretch",
                                 help="The file at its true size, with its path and a download button"):
                        open_viewer([x.path for x in res], i, roots)
