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


@st.dialog("Original", width="large")
def show_original(path: str, roots: list[str]) -> None:
    """A dialog with the file at full resolution, its size, and a download button."""
    try:
        raw, shown, (w, h) = original_image(path, roots)
    except UnsafePathError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # unreadable since indexing
        st.error(f"{state.short_path(path, roots)}: cannot read ({type(exc).__name__}: {exc})"[:300])
        return
    st.image(shown, width="stretch")
    st.caption(f"`{state.short_path(path, roots)}` · {w}×{h} · {human_bytes(len(raw))} "
               "(the full-screen button shows every pixel)")
    st.download_button("Download original", raw, file_name=os.path.basename(path), key="orig_download")
