"""lookalike.settings: every LOOKALIKE_* variable the code or the tests read is listed there, and the one cache root
serves the compiled models and the training features alike."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT
from lookalike import settings


def test_every_variable_read_anywhere_is_a_listed_setting():
    names = set()
    for folder in ("lookalike", "retrieval", "indexer", "training", "ui", "data", "tests", "benchmarks"):
        for f in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"\bLOOKALIKE_[A-Z][A-Z_]*[A-Z]\b", f.read_text()))
    assert names and names <= set(settings.ENV), sorted(names - set(settings.ENV))
    with pytest.raises(KeyError, match="not a lookalike setting"):
        settings.env("LOOKALIKE_" + "NOPE")  # (spelt in two parts: the scan above would find it)


def test_one_cache_root_for_models_and_features(monkeypatch, tmp_path):
    from lookalike.retrieval.runtime import cache_dir
    from lookalike.training.feature_cache import cache_dir as feature_dir

    monkeypatch.delenv("LOOKALIKE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_root() == tmp_path / "xdg" / "lookalike"
    assert cache_dir() == settings.cache_root() and feature_dir() == settings.cache_root() / "features"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine" and feature_dir() == tmp_path / "mine" / "features"
    monkeypatch.setenv("LOOKALIKE_CACHE", "")  # empty: unset
    assert settings.cache_root() == tmp_path / "xdg" / "lookalike"


@pytest.mark.parametrize("value, on", [("", False), ("0", False), ("false", False), ("1", True), ("yes", True)])
def test_flags(monkeypatch, value, on):
    monkeypatch.setenv("LOOKALIKE_UI_READ_ONLY", value)
    assert settings.env_flag("LOOKALIKE_UI_READ_ONLY") is on


def test_the_cli_choices_are_the_settings():
    from lookalike.argtypes import PRECISIONS, RUNTIMES

    assert (RUNTIMES, PRECISIONS) == (settings.RUNTIMES, settings.PRECISIONS)
    assert Path(settings.bench_cache_root()).name  # a folder, whatever the environment
