"""Real photographs bundled with scikit-image (no download), for demos and tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["PHOTO_NAMES", "load_photo", "available_photos", "write_photos", "photo_crops", "unseen_query",
           "calibration_photos"]

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


def photo_crops(folder: str | os.PathLike, n: int, seed: int = 0, size: int = 64,
                names: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "coins")) -> list[Path]:
    """``n`` distinct small JPEGs ``im00000.jpg``...: seeded random square crops of the photos, resized to ``size``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos = [load_photo(p).convert("RGB") for p in names]
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        s = int(rng.integers(64, min(w, h) // 2))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        p = folder / f"im{i:05d}.jpg"
        im.crop((x, y, x + s, y + s)).resize((size, size)).save(p, quality=90)
        out.append(p)
    return out


def unseen_query(path: str | os.PathLike) -> Path:
    """A photo an index of the bundled photos has never seen: chelsea the cat, cropped, resized, JPEG-recompressed."""
    im = load_photo("chelsea").convert("RGB")
    w, h = im.size
    im = im.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.97))).resize((256, 192), Image.BICUBIC)
    im.save(path, quality=70)
    return Path(path)


def calibration_photos(n: int = 96, seed: int = 0) -> list[Image.Image]:
    """Random crops (30-100 % of a side, some flipped) of the photos bundled with scikit-learn and matplotlib, for
    calibrating int8 quantization; scikit-image's photos are kept for evaluation."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    sources = [Image.fromarray(a) for a in load_sample_images().images]
    sources.append(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = sources[i % len(sources)]
        s = rng.uniform(0.3, 1.0)
        cw, ch = int(im.width * s), int(im.height * s)
        x, y = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        out.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return out
