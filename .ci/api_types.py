"""The public API as a user's type checker sees it: checked by mypy in `make lint` (.ci/typecheck), never run.
An ``assert_type`` that no longer holds (a name typed Any, a changed return type) fails the lint."""
from __future__ import annotations

from typing import assert_type

import lookalike
from lookalike.retrieval.searcher import DenoiseJSON
from lookalike import (DuplicateReport, EmbedderLike, Engine, IndexReport, IndexStatus, LookalikeError, SearchJSON,
                       SearchOptions, SearchResult, SearchResults, load_embedder)


def use(engine: Engine) -> None:
    assert_type(Engine.open("idx", create=False), Engine)
    results = engine.search("query.jpg", options=SearchOptions(k=3, views="mirror-turns"))
    assert_type(results, SearchResults)
    assert_type(engine.search("query.jpg", k=5)[0], SearchResult)
    as_json = results.to_json()
    assert_type(as_json, SearchJSON)
    assert_type(as_json["results"][0]["score"], float)
    assert_type(as_json["denoise"], DenoiseJSON | None)
    assert_type(engine.add(["photos"], progress=False), IndexReport)
    assert_type(engine.duplicates(), DuplicateReport)
    assert_type(engine.status(), IndexStatus)
    assert_type(engine.embedder, EmbedderLike)
    assert_type(load_embedder("pixels"), EmbedderLike)
    assert_type(lookalike.EngineError("x"), lookalike.EngineError)
    error: LookalikeError = lookalike.EngineError("an engine error is a LookalikeError")
    del error
