"""More development photos from Debian packages that are not wallpapers: GCompris's educational photos (animals,
monuments, planets, paintings; ``gcompris-qt-data``, stored in Qt resource files) and Jigzo's puzzle photos
(``jigzo-data``). Missing packages give no photos. Never the evaluation photos (scikit-image, wallpapers).
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

__all__ = ["qt_resources", "gcompris_photos", "gcompris_drawings", "jigzo_photos", "GCOMPRIS_ACTIVITIES"]

_GCOMPRIS = Path("/usr/share/gcompris-qt/rcc")
_JIGZO = Path("/usr/share/games/jigzo/puzzles")
# activities whose images are photographs or paintings (the others are drawings)
GCOMPRIS_ACTIVITIES = ("explore_monuments", "erase", "explore_world_animals", "explore_farm_animals",
                       "explore_world_music", "details", "paintings", "solar_system", "categorization")
MIN_SIDE = 256


def qt_resources(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every uncompressed file in a Qt ``.rcc`` resource bundle (format 1-3)."""
    b = Path(path).read_bytes()
    if b[:4] != b"qres":
        return
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 22 if version >= 2 else 14

    def name(off: int) -> str:
        n = struct.unpack(">H", b[names + off:names + off + 2])[0]
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        idx, prefix = stack.pop()
        o = tree + idx * node
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        nm = name(noff) if idx else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            stack.extend((c, f"{prefix}{nm}/") for c in range(first, first + count))
        elif not flags & 5:  # zlib (1) or zstd (4) compressed files are skipped: photos are stored as they are
            doff = struct.unpack(">I", b[o + 10:o + 14])[0]
            size = struct.unpack(">I", b[data + doff:data + doff + 4])[0]
            yield prefix + nm, b[data + doff + 4:data + doff + 4 + size]


def _thumb(im: Image.Image) -> np.ndarray:
    a = np.asarray(im.convert("L").resize((24, 24), Image.BILINEAR), np.float32).ravel()
    a = a - a.mean()
    return a / max(float(np.linalg.norm(a)), 1e-6)


def _unique(items: list[tuple[str, Image.Image]]) -> list[tuple[str, Image.Image]]:
    """Drop repeats of one picture (the same photo in two activities): 24 px grey correlation >= 0.95."""
    out, seen = [], []
    for name, im in items:
        t = _thumb(im)
        if any(float(t @ s) >= 0.95 for s in seen):
            continue
        seen.append(t)
        out.append((name, im))
    return out


def _gcompris(photos: bool, min_side: int) -> list[tuple[str, Image.Image]]:
    out = []
    for rcc in sorted(_GCOMPRIS.glob("*.rcc")) if _GCOMPRIS.is_dir() else []:
        for name, raw in qt_resources(rcc):
            parts = name.split("/")
            if not name.lower().endswith(".webp") or len(parts) < 5 or (parts[4] in GCOMPRIS_ACTIVITIES) != photos:
                continue
            try:
                im = Image.open(io.BytesIO(raw))
                im.load()
            except (OSError, ValueError):
                continue
            if min(im.size) >= min_side:
                out.append((f"gcompris-{parts[4]}-{Path(name).stem}", im.convert("RGB")))
    return _unique(out)


def gcompris_photos(min_side: int = MIN_SIDE) -> list[tuple[str, Image.Image]]:
    """GCompris's photographs (``gcompris-qt-data``): WebP images of the photo activities, short side >= min_side."""
    return _gcompris(True, min_side)


def gcompris_drawings(min_side: int = MIN_SIDE) -> list[tuple[str, Image.Image]]:
    """GCompris's other WebP images (drawings, cartoons), short side >= min_side: background images, never queries."""
    return _gcompris(False, min_side)


def jigzo_photos() -> list[tuple[str, Image.Image]]:
    """Jigzo's puzzle photos (``jigzo-data``): the JPEG inside each ``.pzl`` file."""
    out = []
    for p in sorted(_JIGZO.glob("*/*.pzl")) if _JIGZO.is_dir() else []:
        b = p.read_bytes()
        start = b.find(b"\xff\xd8\xff")
        if start < 0:
            continue
        try:
            im = Image.open(io.BytesIO(b[start:]))
            im.load()
        except (OSError, ValueError):
            continue
        out.append((f"jigzo-{p.stem.split('-')[0]}", im.convert("RGB")))
    return out
