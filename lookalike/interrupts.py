"""Ctrl+C and SIGTERM held back while the main thread commits: the interrupt lands between commits, never inside one
(a KeyboardInterrupt inside a database transaction left a half-finished commit for the next run to repair, and the
database driver's own report of it on stderr)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["held", "interrupt"]

_depth = 0
_pending = False


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def held() -> Iterator[None]:
    """Within it, :func:`interrupt` (the CLI's SIGINT and SIGTERM handler) waits for its end; other threads'
    sections hold nothing back (signals only interrupt the main thread)."""
    global _depth, _pending
    if not _main():
        yield
        return
    _depth += 1
    try:
        yield
    except BaseException:  # the error ends the work as the interrupt would have: it is reported, not replaced
        _depth -= 1
        if _depth == 0:
            _pending = False
        raise
    _depth -= 1
    if _depth == 0 and _pending:
        _pending = False
        raise KeyboardInterrupt


def interrupt(signum: int, _frame) -> None:
    """The signal handler: KeyboardInterrupt now, or at the end of the :func:`held` section the main thread is in."""
    global _pending
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt
