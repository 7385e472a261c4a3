"""What ``lookalike ui`` runs: the Streamlit app (:mod:`lookalike.ui.app`) with the thumbnail route
(:mod:`lookalike.ui.thumbs`) beside it, served by ``streamlit run server.py``."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from lookalike.ui.thumbs import routes

app = st.App(str(Path(__file__).resolve().parent / "app.py"), routes=routes())
