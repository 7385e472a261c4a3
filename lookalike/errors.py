"""The one base class of every error lookalike raises for bad input; the command line prints it as one line."""
from __future__ import annotations

__all__ = ["LookalikeError"]


class LookalikeError(Exception):
    """Bad input, a damaged file or a missing resource; ``str()`` is one line for the user."""
