"""Real photographs bundled with scikit-image (no download), for demos and tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["PHOTO_NAMES", "load_photo", "available_photos", "write_photos"]

# Bundled in scikit-image's wheel (other data.* images need a download and are not used).
PHOTO_NAMES = ["astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "hubble_deep_field",
               "immunohistochemistry", "moon", "page", "text", "clock", "horse", "logo", "colorwheel"]


def load_photo(name: str) -> Image.Image:
    """A scikit-image sample photo as a PIL image (RGB, L or RGBA as shipped)."""
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return Image.fromarray(arr)


def available_photos() -> list[str]:
    """Names from PHOTO_NAMES that load offline on this installation."""
    out = []
    for n in PHOTO_NAMES:
        try:
            load_photo(n)
            out.append(n)
        except Exception:
            continue
    return out


def write_photos(out_dir: str | os.PathLike, names: list[str] | None = None, fmt: str = "png") -> list[Path]:
    """Save sample photos into ``out_dir`` as ``<name>.<fmt>``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in names or available_photos():
        im = load_photo(n)
        if fmt in ("jpg", "jpeg") and im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        p = out / f"{n}.{fmt}"
        im.save(p)
        paths.append(p)
    return paths
