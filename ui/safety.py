"""What the web app may read: only files inside the indexed roots, and uploads no larger than a cap.

Every file the UI opens (thumbnails, an indexed image picked as a query, a clicked result) goes through
:func:`check_readable`, which resolves symlinks and ``..`` first, so a path typed or crafted in the browser can
never make the server read something outside the folders the index was built from.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "FileGone",
    "UnsafePathError",
    "UploadTooLarge",
    "check_readable",
    "check_upload",
    "is_inside",
    "max_upload_bytes",
]

DEFAULT_MAX_UPLOAD_MB = 20


class UnsafePathError(PermissionError):
    """A path outside every indexed root (or not a regular file); the message is one line for the user."""


class FileGone(UnsafePathError):
    """An indexed path that is no longer a regular file (moved or deleted since it was indexed)."""


class UploadTooLarge(ValueError):
    """An upload bigger than the configured cap."""


def _real(p: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(p))))


def is_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """True when ``path`` (symlinks and ``..`` resolved) lies at or below one of ``roots`` (resolved too)."""
    rp = _real(path)
    for root in roots:
        rr = _real(root)
        if rp == rr or rp.startswith(rr.rstrip(os.sep) + os.sep):
            return True
    return False


def check_readable(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """The resolved path of a regular file inside the indexed ``roots``; :class:`UnsafePathError` otherwise."""
    roots = list(roots)
    if not roots:
        raise UnsafePathError(f"{os.fspath(path)}: the index has no folders yet, so no file may be opened")
    if "\x00" in os.fspath(path):
        raise UnsafePathError("path contains a NUL byte")
    if not is_inside(path, roots):
        raise UnsafePathError(f"{os.fspath(path)}: outside the indexed folders; the app opens only indexed files")
    rp = Path(_real(path))
    if not rp.is_file():
        raise FileGone(f"{os.fspath(path)}: not a file (moved or deleted since it was indexed?)")
    return rp


def max_upload_bytes() -> int:
    """The upload cap in bytes (``LOOKALIKE_MAX_UPLOAD_MB``, default 20 MB)."""
    try:
        mb = float(os.environ.get("LOOKALIKE_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return int(max(mb, 0.001) * 1024 * 1024)


def check_upload(data: bytes, name: str = "upload", limit: int | None = None) -> bytes:
    """Return ``data`` when it is non-empty and within the cap; :class:`UploadTooLarge` / ValueError otherwise."""
    limit = max_upload_bytes() if limit is None else int(limit)
    if len(data) > limit:
        raise UploadTooLarge(f"{name}: {len(data) / 1024 / 1024:.3g} MB is over the {limit / 1024 / 1024:.3g} MB upload limit")
    if not data:
        raise ValueError(f"{name}: empty file")
    return data
