"""The base class of every error lookalike raises for bad input (the command line prints it as one line), and
``EngineError`` for an index folder or query that cannot be used."""
from __future__ import annotations

__all__ = ["LookalikeError", "EngineError"]


class LookalikeError(Exception):
    """Bad input, a damaged file or a missing resource; ``str()`` is one line for the user."""


class EngineError(LookalikeError, RuntimeError):
    """An index folder or query that cannot be used; the message is one line for the user."""
