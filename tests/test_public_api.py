"""The package's public API: every documented name importable from ``lookalike`` without loading the heavy modules
first, the frozen SearchOptions that Engine.search takes (the keywords mapped onto it, same results), and the
EmbedderLike protocol that every embedder meets."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import lookalike
from lookalike import Engine, EngineError, LookalikeError, SearchOptions
from lookalike.retrieval.embedders import get_embedder


def test_every_exported_name_resolves_and_import_stays_light():
    for name in lookalike.__all__:
        assert getattr(lookalike, name) is not None, name
    from lookalike.indexer.pipeline import IndexReport
    from lookalike.retrieval.duplicates import DuplicateReport

    assert lookalike.IndexReport is IndexReport and lookalike.DuplicateReport is DuplicateReport
    assert issubclass(lookalike.EngineError, LookalikeError)
    with pytest.raises(AttributeError, match="no attribute 'Enigne'"):
        lookalike.Enigne  # noqa: B018
    code = ("import sys, lookalike\n"
            "print(sorted(m for m in ('numpy', 'torch', 'PIL', 'sqlalchemy', 'dataclasses') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_search_options_are_frozen_and_refuse_unknown_names():
    opts = SearchOptions(k=3, views="mirror-turns")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.k = 4  # type: ignore[misc]
    assert opts.updated(k=None, min_score=0.5) == SearchOptions(k=3, views="mirror-turns", min_score=0.5)
    assert opts.updated(k=None) is opts
    with pytest.raises(TypeError, match="unknown search option"):
        opts.updated(kk=3)


@pytest.fixture(scope="module")
def pixels_index(tmp_path_factory, photo_dir):
    with Engine.open(tmp_path_factory.mktemp("api") / "idx", model="pixels@16") as eng:
        eng.add([photo_dir], progress=False, workers=0, warn=None)
        yield eng, photo_dir


def _hits(res) -> list[tuple[str, float]]:
    return [(r.path, round(r.score, 6)) for r in res]


def test_search_options_give_what_the_keywords_give(pixels_index):
    eng, photos = pixels_index
    query = photos / "coffee.png"
    by_keywords = eng.search(query, k=4, exclude_self=True, lowfreq="off", views="mirror")
    by_options = eng.search(query, options=SearchOptions(k=4, exclude_self=True, lowfreq="off", views="mirror"))
    assert _hits(by_options) == _hits(by_keywords) and len(by_keywords) == 4
    assert str(query) not in [p for p, _ in _hits(by_options)]
    assert by_options.views == "mirror"
    # a keyword overrides its field; the others keep the options' values
    assert _hits(eng.search(query, k=2, options=SearchOptions(k=4, exclude_self=True, lowfreq="off",
                                                                  views="mirror"))) == _hits(by_keywords)[:2]
    assert eng.search(query, k=5)[0].path == str(query)  # the defaults: the query itself first
    with pytest.raises(EngineError, match="k must be positive"):
        eng.search(query, options=SearchOptions(k=0))


def test_every_embedder_is_embedder_like(pixels_index):
    eng, _ = pixels_index
    torch_one = get_embedder("pixels@16")
    for emb in (eng.embedder, torch_one):
        assert isinstance(emb, lookalike.EmbedderLike), type(emb).__name__
        assert emb.dim == eng.dim and emb.describe()["dim"] == eng.dim
    assert not isinstance(object(), lookalike.EmbedderLike)


@pytest.mark.parametrize("setup, expected", [
    ("", "lookalike: cache rebuilt 100%\n"),  # nothing configured: the one line the library printed before
    ("logging.basicConfig(format='app %(name)s %(levelname)s %(message)s')\n",
     "app lookalike.retrieval.runtime WARNING cache rebuilt 100%\n"),  # routed by the application, once
    ("logging.getLogger('lookalike').setLevel(logging.ERROR)\n", ""),  # silenced
    ("logging.basicConfig()\nfrom lookalike.log import install_stderr_handler\ninstall_stderr_handler()\n"
     "logging.getLogger().handlers.clear()\n", "lookalike: cache rebuilt 100%\n"),  # the command line's handler
])
def test_library_messages_go_through_logging(setup, expected):
    code = f"import logging\n{setup}from lookalike.retrieval.runtime import note\nnote('cache rebuilt 100%')\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert done.stderr == expected
