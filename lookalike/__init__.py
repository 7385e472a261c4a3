"""lookalike: local, offline image similarity search.

    from lookalike import Engine, SearchOptions
    engine = Engine.open("my-index")
    engine.add(["~/Pictures"])
    results = engine.search("query.jpg", k=5)                               # or options=SearchOptions(k=5, ...)
"""
from __future__ import annotations

from lookalike.errors import EngineError, LookalikeError  # the error classes: a module of two classes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (which costs more than the rest)
if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use (__getattr__ below)
    from lookalike.protocols import EmbedderLike
    from lookalike.retrieval.options import SearchOptions
    from lookalike.indexer.pipeline import IndexReport
    from lookalike.retrieval.duplicates import DuplicateReport
    from lookalike.retrieval.embedders import get_embedder, list_embedders
    from lookalike.retrieval.engine import Engine, IndexStatus, RebuildReport, SearchResult, SearchResults
    from lookalike.retrieval.runtime import load_embedder
    from lookalike.retrieval.searcher import SearchJSON

__version__ = "0.1.0"

__all__ = ["Engine", "EngineError", "LookalikeError", "SearchOptions", "SearchResult", "SearchResults", "SearchJSON",
           "IndexStatus", "IndexReport", "DuplicateReport", "RebuildReport", "EmbedderLike", "get_embedder", "list_embedders",
           "load_embedder", "__version__"]

# lazy names -> the module that defines them: importing lookalike (e.g. for the CLI's --help) must not load torch
# (nor dataclasses and typing, which cost more than the rest of `import lookalike` together)
_LAZY = {
    "SearchOptions": "lookalike.retrieval.options",
    "EmbedderLike": "lookalike.protocols",
    "Engine": "lookalike.retrieval.engine",
    "SearchResult": "lookalike.retrieval.engine",
    "SearchResults": "lookalike.retrieval.engine",
    "SearchJSON": "lookalike.retrieval.searcher",
    "IndexStatus": "lookalike.retrieval.engine",
    "RebuildReport": "lookalike.retrieval.engine",
    "IndexReport": "lookalike.indexer.pipeline",
    "DuplicateReport": "lookalike.retrieval.duplicates",
    "get_embedder": "lookalike.retrieval.embedders",
    "list_embedders": "lookalike.retrieval.embedders",
    "load_embedder": "lookalike.retrieval.runtime",
}


if not TYPE_CHECKING:  # hidden from type checkers, which see the imports above (and flag any other name)
    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # loaded once
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
