"""Walk folders for image files: junk and hidden entries ignored, symlink loops and odd names reported."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator

from .loading import describe_path, heif_missing_reason, supported_extensions

__all__ = ["ScanEntry", "ScanProblem", "scan", "is_junk", "merge_roots", "is_below"]

_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".localized"}


@dataclass(frozen=True)
class ScanEntry:
    """An image file found by the scan (absolute path, size in bytes, mtime and ctime in ns, inode).

    A file counts as unchanged only while all four stay the same: a different image copied over an old one
    with its mtime put back (``touch -r``) still gets a new ctime."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    ino: int = 0


@dataclass(frozen=True)
class ScanProblem:
    """A file with an image extension that cannot be used, and why (one line)."""

    path: str
    reason: str
    size: int = 0
    mtime_ns: int = 0


def is_junk(name: str) -> bool:
    """Hidden files, AppleDouble ``._*`` files and OS thumbnails caches."""
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def _valid_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def merge_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    """Absolute roots without repeats, and without a root that lies inside another (it is scanned with it)."""
    out: list[str] = []
    for r in sorted({os.path.abspath(os.fspath(r)) for r in roots}, key=len):
        if not any(is_below(r, o) for o in out):
            out.append(r)
    return sorted(out)


def is_below(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies inside it (absolute, normalised paths)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan(roots: Iterable[str | os.PathLike], extensions: frozenset[str] | None = None) -> Iterator[ScanEntry | ScanProblem]:
    """Yield every image file below ``roots`` (recursively, symlinks followed once) or the problem with it.

    A root may also be a single file. Missing roots raise FileNotFoundError before anything is yielded.
    """
    exts = extensions or supported_extensions()
    root_list = merge_roots(roots)
    for r in root_list:
        if not os.path.exists(r):
            raise FileNotFoundError(f"{describe_path(r)}: no such file or folder")
    seen_dirs: set[tuple[int, int]] = set()
    real_roots = [os.path.realpath(r) for r in root_list]
    for root in root_list:
        if os.path.isfile(root):
            yield from _file_entry(root, exts, explicit=True)
            continue
        yield from _walk(root, exts, seen_dirs, real_roots)


def _file_entry(path: str, exts: frozenset[str], explicit: bool = False) -> Iterator[ScanEntry | ScanProblem]:
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower()
    if not explicit and ext not in exts:
        missing = heif_missing_reason(path)
        if missing and _valid_utf8(path):
            yield ScanProblem(path, missing)
        return
    if not _valid_utf8(path):
        yield ScanProblem(describe_path(path), "file name is not valid UTF-8")
        return
    try:
        st = os.stat(path)  # follows symlinks
    except OSError as exc:
        if os.path.islink(path):
            reason = "symlink loop" if exc.errno == 40 else "broken symlink (target missing)"
        else:
            reason = "permission denied" if exc.errno in (1, 13) else (exc.strerror or str(exc))
        yield ScanProblem(path, reason)
        return
    if not stat.S_ISREG(st.st_mode):
        yield ScanProblem(path, "not a regular file")
        return
    if not os.access(path, os.R_OK):
        yield ScanProblem(path, "permission denied", st.st_size, st.st_mtime_ns)
        return
    yield ScanEntry(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _outside(real: str, real_roots: list[str]) -> bool:
    return not any(is_below(real, r) for r in real_roots)


def _walk(top: str, exts: frozenset[str], seen_dirs: set[tuple[int, int]],
          real_roots: list[str]) -> Iterator[ScanEntry | ScanProblem]:
    """Files below ``top``. A file whose real location (symlinks resolved) is outside every root is skipped
    with the reason, so that everything indexed can be shown by the UI and the HTTP API, which serve only files
    inside the roots."""
    stack = [top]
    while stack:
        d = stack.pop()
        real_d = os.path.realpath(d)
        try:
            st = os.stat(d)
        except OSError as exc:
            yield ScanProblem(describe_path(d), "symlink loop" if exc.errno == 40 else f"cannot open folder ({exc.strerror})")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            if os.path.islink(d):  # reached again through a symlink: visited once only, so loops end here
                yield ScanProblem(describe_path(d), "symlink loop (links to a folder already scanned); not followed")
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield ScanProblem(describe_path(d), f"cannot list folder ({exc.strerror or exc})")
            continue
        subdirs = []
        for e in entries:
            if is_junk(e.name):
                continue
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(e.path)
                continue
            real = os.path.realpath(e.path) if e.is_symlink() else os.path.join(real_d, e.name)
            if _outside(real, real_roots) and os.path.splitext(e.name)[1].lower() in exts:
                yield ScanProblem(describe_path(e.path), f"symlink to a file outside the indexed folders "
                                  f"({describe_path(real)}); index that folder too to include it")
            else:
                yield from _file_entry(e.path, exts)
        stack.extend(reversed(subdirs))
