"""lookalike: local, offline image similarity search.

    from lookalike import Engine
    engine = Engine.open("my-index")
    engine.add(["~/Pictures"])
    results = engine.search("query.jpg", k=5)
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Engine", "EngineError", "SearchResult", "SearchResults", "IndexStatus", "get_embedder", "list_embedders", "__version__"]


def __getattr__(name: str):
    # Lazy: importing lookalike (e.g. for the CLI's --help) must not load torch.
    if name in ("Engine", "EngineError", "SearchResult", "SearchResults", "IndexStatus"):
        from lookalike.retrieval import engine

        return getattr(engine, name)
    if name in ("get_embedder", "list_embedders"):
        from lookalike.retrieval import embedders

        return getattr(embedders, name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
