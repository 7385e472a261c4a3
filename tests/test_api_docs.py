"""`make docs`: the API reference built offline from the docstrings (pdoc) documents the public names."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # imports every public module in a fresh process


def test_api_reference_builds_from_the_docstrings(tmp_path):
    pytest.importorskip("pdoc", reason="pdoc is in the dev extra")
    modules = re.search(r"^API_MODULES := (.*?)\n(?=\S)", (ROOT / "Makefile").read_text(), re.S | re.M).group(1)
    res = subprocess.run([sys.executable, "-m", "pdoc", "--docformat", "restructuredtext", "--output-directory",
                          str(tmp_path), *modules.replace("\\\n", " ").split()], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    engine = (tmp_path / "lookalike" / "retrieval" / "engine.html").read_text()
    assert "Open (or create) the index folder" in engine  # Engine.open's docstring
    assert "SearchOptions" in (tmp_path / "lookalike" / "retrieval" / "options.html").read_text()
    assert "EngineError" in (tmp_path / "lookalike" / "errors.html").read_text()
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', engine)  # nothing fetched when it is read
