"""Packaging: every source folder with an __init__.py is installed under the one import name `lookalike`."""
from __future__ import annotations

import tomllib

from helpers import ROOT
TOP = {"lookalike": "lookalike", "retrieval": "lookalike.retrieval", "indexer": "lookalike.indexer",
       "training": "lookalike.training", "ui": "lookalike.ui", "data": "lookalike.data"}


def test_every_subpackage_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for folder, name in TOP.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"missing {sorted(found - listed)}, stale {sorted(listed - found)}"
    assert all(cfg["package-dir"][n] == f for f, n in TOP.items())


def test_console_script_and_no_generic_top_level_names():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["project"]["scripts"]["lookalike"] == "lookalike.cli:main"
    assert all(p == "lookalike" or p.startswith("lookalike.") for p in cfg["tool"]["setuptools"]["packages"])
