"""lookalike web app: ``lookalike ui --db INDEX_DIR`` (or ``streamlit run app.py -- --db INDEX_DIR``).

Five pages share one cached engine (see :mod:`lookalike.ui.state`): Search, Index, Explore, Compare and Duplicates.
"""
from __future__ import annotations

import streamlit as st
from lookalike.ui import compare_page, duplicates_page, explore_page, index_page, keys, search_page, state


def _favicon():
    """A small magnifier drawn locally (a material-icon favicon would be fetched from Google's CDN)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse((6, 6, 42, 42), outline=(255, 75, 75, 255), width=7)
    d.line((38, 38, 58, 58), fill=(255, 75, 75, 255), width=9)
    return im



def _job_line(db: str) -> None:
    """The server's running indexing job, on every page (it goes on whatever page is open)."""
    from lookalike.ui.jobs import RUNNER

    job = RUNNER.active(db)
    if job is not None:
        st.caption(f"**Indexing** (see the Index page): {index_page.job_line(job)}")


def _sidebar() -> None:
    cfg = state.settings()
    with st.sidebar:
        st.markdown("### lookalike")
        st.caption("Offline image similarity search")
        if not cfg.db:
            st.warning("No index folder: start with `lookalike ui --db DIR`.")
            return
        try:
            eng = state.get_engine(cfg.db)
        except Exception as exc:  # a damaged index: the pages show the message too
            st.error(str(exc))
            return
        if eng is None:
            _job_line(cfg.db)
            st.caption(f"Index `{cfg.db}` (empty)")
            return
        _job_line(cfg.db)
        n = len(eng.index) if eng.index is not None else 0
        st.caption(f"Index `{cfg.db}`  \n{n} images · model **{eng.config.model}**"
                   + ("  \nread-only" if cfg.read_only else ""))


pages = [
    st.Page(search_page.render, title="Search", url_path="search", default=True),
    st.Page(index_page.render, title="Index", url_path="index"),
    st.Page(explore_page.render, title="Explore", url_path="explore"),
    st.Page(compare_page.render, title="Compare", url_path="compare"),
    st.Page(duplicates_page.render, title="Duplicates", url_path="duplicates"),
]
nav = st.navigation(pages)
# after st.navigation, so that the pages' material icons do not become a CDN-hosted favicon
st.set_page_config(page_title="lookalike", page_icon=_favicon(), layout="wide")
# the uploaders' own "N MB per file" is the server's 4x headroom (lookalike.ui.commands); the labels state the cap
st.html("<style>[data-testid=stFileUploaderDropzoneInstructions] span { display: none; }"
        # a visible ring on whatever the keyboard focused, in light and dark themes alike
        " :focus-visible { outline: 2px solid #2f7cf6 !important; outline-offset: 2px; }</style>")
_sidebar()
keys.install(int(state.settings().max_upload_mb * 1024 * 1024))
nav.run()
try:  # after the run: the modules and the engine it loaded leave the collection Streamlit runs after each run
    state.freeze_long_lived(state.get_engine())
except Exception:  # noqa: BLE001 - a damaged index: the page said so; nothing to freeze but the modules
    state.freeze_long_lived(None)
