"""The original of an indexed file at full resolution, in a dialog: only files inside the indexed roots.

The path goes through :func:`lookalike.ui.safety.check_readable` (symlinks and ``..`` resolved first), so a
result can never make the server send a file outside the folders the index was built from.
"""
from __future__ import annotations

import io
import os

import streamlit as st
from PIL import Image

from lookalike.fsutil import human_bytes

from . import state
from .safety import UnsafePathError

BROWSER_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP"}  # shown as they are; others are converted to PNG


def original_image(path: str, roots: list[str]) -> tuple[bytes, bytes, tuple[int, int]]:
    """(file bytes, bytes a browser can show at full resolution, (width, height) as displayed).

    UnsafePathError outside the roots. Formats browsers cannot show (TIFF, HEIC...) become a full-size PNG.
    """
    from lookalike.indexer.loading import open_image_bytes

    raw = state.load_indexed(path, roots)
    with Image.open(io.BytesIO(raw)) as im:
        fmt, (w, h) = im.format, im.size
        turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap width and height
    if fmt in BROWSER_FORMATS:  # browsers apply the EXIF orientation themselves
        return raw, raw, ((h, w) if turned else (w, h))
    full = open_image_bytes(raw, name=os.path.basename(path))
    return raw, state.image_to_png(full), full.size


VIEWER_AT = "viewer_at"  # session key: the position in the viewer's list of the file shown


def open_viewer(paths: list[str], at: int, roots: list[str]) -> None:
    """Open the viewer on ``paths[at]``; Previous / Next (and the arrow keys) go through ``paths``."""
    st.session_state[VIEWER_AT] = at
    show_original(paths[at], roots, paths)


def _step(n: int, step: int) -> None:
    st.session_state[VIEWER_AT] = min(max(0, int(st.session_state.get(VIEWER_AT, 0)) + step), n - 1)


@st.dialog("Original", width="large")
def show_original(path: str, roots: list[str], paths: list[str] | None = None) -> None:
    """A dialog with the file at its true size (never enlarged), its path and a download button above it, and
    Previous / Next through ``paths`` (the arrow keys press them; Esc closes)."""
    paths = paths or [path]
    at = min(int(st.session_state.get(VIEWER_AT, paths.index(path) if path in paths else 0)), len(paths) - 1)
    path = paths[at]
    if len(paths) > 1:
        c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="center")
        c1.button("← Previous", key="viewer_prev", disabled=at <= 0, on_click=_step, args=(len(paths), -1),
                  width="stretch", help="Previous result (left arrow key)")
        c2.markdown(f"<div style='text-align:center'>{at + 1} of {len(paths)}</div>", unsafe_allow_html=True)
        c3.button("Next →", key="viewer_next", disabled=at >= len(paths) - 1, on_click=_step, args=(len(paths), 1),
                  width="stretch", help="Next result (right arrow key)")
    try:
        raw, shown, (w, h) = original_image(path, roots)
    except UnsafePathError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # unreadable since indexing
        st.error(f"{state.short_path(path, roots)}: cannot read ({type(exc).__name__}: {exc})"[:300])
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    c1.caption(f"`{state.short_path(path, roots)}` · {w}×{h} · {human_bytes(len(raw))}")
    c2.download_button("Download original", raw, file_name=os.path.basename(path), key="orig_download",
                       width="stretch")
    # its own pixels: at most its natural width (never enlarged), narrower only when the dialog is
    with st.container(key="viewer-image"):
        st.image(shown, width="content")
