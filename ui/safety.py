"""What the web app may read: only files inside the indexed roots, and uploads no larger than a cap.

Every file the UI opens (thumbnails, an indexed image picked as a query, a clicked result) goes through
:func:`check_readable`, which resolves symlinks and ``..`` first, so a path typed or crafted in the browser can
never make the server read something outside the folders the index was built from.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "FileGone",
    "UnsafePathError",
    "TOO_LARGE_MARKER",
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


# what the page's script (lookalike.ui.keys) uploads in place of a file over the cap: this line, then the file's name
# and size as JSON; the browser never sends the file itself, whatever its size
TOO_LARGE_MARKER = b"lookalike: file over the upload limit\n"


def check_upload(data: bytes, name: str = "upload", limit: int | None = None, from_page: bool = False) -> bytes:
    """Return ``data`` when it is non-empty and within the cap; :class:`UploadTooLarge` / ValueError otherwise.

    ``from_page``: the web app's uploads, where the page stands in :data:`TOO_LARGE_MARKER` for a file over the cap
    (the reason then gives that file's real size)."""
    limit = max_upload_bytes() if limit is None else int(limit)
    size = len(data)
    if from_page and data.startswith(TOO_LARGE_MARKER) and size < 4096:  # the size of the file the page kept back
        try:
            size = int(json.loads(data[len(TOO_LARGE_MARKER):])["size"])
        except (ValueError, KeyError, TypeError):
            size = -1
    if size > limit:
        raise UploadTooLarge(f"{name}: {size / 1024 / 1024:.3g} MB is over the {limit / 1024 / 1024:.3g} MB upload limit")
    if not data:
        raise ValueError(f"{name}: empty file")
    return data
