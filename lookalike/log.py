"""The library's messages go to loggers under "lookalike" (``logger(__name__)``, i.e. ``logging.getLogger``); the
library itself never prints.

While the application configures no logging (no handler on the root logger nor on "lookalike"), warnings still
reach stderr, each as the one line ``lookalike: message`` that the library printed before it logged; once it does
(``logging.basicConfig``, a server's handlers), they go only where it routes them, and raising the "lookalike"
logger's level silences them. The command line installs the same one-line handler for good
(:func:`install_stderr_handler`).
"""
from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "logger", "OneLineStderr", "install_stderr_handler"]

LOGGER_NAME = "lookalike"


class OneLineStderr(logging.Handler):
    """Each record as one line ``lookalike: message`` on the current ``sys.stderr``, above any tqdm progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{LOGGER_NAME}: {record.getMessage()}"
            tqdm = sys.modules.get("tqdm")  # progress bars can only be on screen when tqdm is loaded
            if tqdm is not None:
                tqdm.tqdm.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)
        except Exception:
            self.handleError(record)


class _UntilConfigured(OneLineStderr):
    """OneLineStderr while no other handler would receive the record (Python's last resort, with the prefix)."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers or any(h is not self for h in logging.getLogger(LOGGER_NAME).handlers):
            return
        super().emit(record)


_ROOT = logging.getLogger(LOGGER_NAME)
if not any(isinstance(h, _UntilConfigured) for h in _ROOT.handlers):
    _ROOT.addHandler(_UntilConfigured())


def logger(name: str) -> logging.Logger:
    """The logger of a lookalike module (``name``: its ``__name__``, under "lookalike")."""
    return logging.getLogger(name)


def install_stderr_handler() -> None:
    """Show the library's warnings as one line each on stderr from now on, whatever else is configured (the command
    line's handler; installing it again does nothing)."""
    if not any(type(h) is OneLineStderr for h in _ROOT.handlers):
        _ROOT.addHandler(OneLineStderr())
