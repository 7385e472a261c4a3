"""Photo sets for the copy and noisy-photo benchmarks: ``dev`` (to tune on), ``eval`` (scikit-image, never tuned on),
and distractors (upscaled CIFAR-10 / MNIST samples, generated scenes, Debian desktop graphics).

``dev`` needs the Debian packages ``mate-backgrounds`` and ``ukui-wallpapers`` (missing files are skipped) plus
scikit-learn's and matplotlib's bundled sample photos; ``dev-wide`` adds GCompris's and Jigzo's photos
(``gcompris-qt-data``, ``jigzo-data``; :mod:`lookalike.data.debian_photos`), about 200 photos in all.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .photos import available_photos, load_photo
from .samples import load_sample

__all__ = ["PHOTO_SETS", "photo_set", "dev_photos", "wide_dev_photos", "eval_photos", "distractors", "generated_scene", "cap_size"]

PHOTO_SETS = ("dev", "dev-wide", "eval")
_BG = Path("/usr/share/backgrounds")
_DEV_DEBIAN = [f"mate/nature/{n}.jpg" for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
                                                 "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")]
_DEV_DEBIAN += ["mate/abstract/Elephants.jpg", "mate/abstract/Flow.png", "mate/abstract/Gulp.png"]
_DEV_DEBIAN += [f"{n}" for n in ("2004default.jpg", "calla.png", "city.png", "desert.png", "firstgeneration.jpg",
                                 "fluent-color.png", "focal-ubuntukylin.png", "goldfish.png", "rhythm.jpg",
                                 "rollpaper.png", "string.jpg", "the-mouse.jpg")]
# Debian desktop graphics that are not in the dev set: distractors
_DISTRACT_DEBIAN = [f"mate/desktop/{n}" for n in ("Float-into-MATE.png", "GreenTraditional.jpg", "MATE-Stripes-Dark.png",
                                                 "MATE-Stripes-Light.png", "Stripes.png", "Ubuntu-Mate-Cold-no-logo.png",
                                                 "Ubuntu-Mate-Dark-no-logo.png", "Ubuntu-Mate-Radioactive-no-logo.png",
                                                 "Ubuntu-Mate-Warm-no-logo.png")]
_DISTRACT_DEBIAN += [f"mate/abstract/{n}" for n in ("Arc-Colors-Transparent-Wallpaper.png", "Silk.png", "Spring.png",
                                                    "Waves.png")]


def cap_size(im: Image.Image, max_side: int) -> Image.Image:
    """RGB copy with the long side at most ``max_side`` (aspect kept)."""
    im = im.convert("RGB")
    if max(im.size) > max_side:
        f = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.LANCZOS)
    return im


def _debian(paths: list[str], max_side: int) -> list[tuple[str, Image.Image]]:
    out = []
    for rel in paths:
        p = _BG / rel
        if p.is_file():
            with Image.open(p) as im:
                out.append((f"debian-{p.stem}", cap_size(im, max_side)))
    return out


def dev_photos(max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """Development photos: Debian mate/ukui wallpapers, scikit-learn's china/flower, matplotlib's grace_hopper."""
    out = _debian(_DEV_DEBIAN, max_side)
    try:
        from sklearn.datasets import load_sample_image

        out += [(f"sklearn-{n[:-4]}", cap_size(Image.fromarray(load_sample_image(n)), max_side))
                for n in ("china.jpg", "flower.jpg")]
    except ImportError:
        pass
    try:
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
            out.append(("matplotlib-grace_hopper", cap_size(im, max_side)))
    except (ImportError, OSError):
        pass
    return out


def eval_photos(max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """Evaluation photos: scikit-image's bundled samples (never train, tune or choose a setting on these)."""
    return [(f"skimage-{n}", cap_size(load_photo(n), max_side)) for n in available_photos()]


def wide_dev_photos(max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """``dev`` plus GCompris's and Jigzo's photos (development only)."""
    from .debian_photos import gcompris_photos, jigzo_photos

    return dev_photos(max_side) + [(n, cap_size(im, max_side)) for n, im in gcompris_photos() + jigzo_photos()]


def photo_set(name: str, max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """``dev``, ``dev-wide`` or ``eval`` photos as (name, RGB image)."""
    if name not in PHOTO_SETS:
        raise ValueError(f"unknown photo set '{name}' (choose {', '.join(PHOTO_SETS)})")
    if name == "eval":
        return eval_photos(max_side)
    return dev_photos(max_side) if name == "dev" else wide_dev_photos(max_side)


def generated_scene(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A synthetic scene: a two-colour gradient background with random blurred shapes and texture."""
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    bg = (c0 * (1 - t) + c1 * t) * np.ones((1, w, 1))
    im = Image.fromarray(bg.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 6)))]
            draw.polygon(pts, fill=fill)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 2.0))))
    a = np.asarray(im, dtype=np.float32) + rng.normal(0.0, float(rng.uniform(0, 12)), (h, w, 1))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def distractors(n: int = 1500, seed: int = 0, max_side: int = 1024) -> list[tuple[str, Image.Image]]:
    """``n`` gallery images that are no query's original: Debian desktop graphics, CIFAR-10 sample x4 (128 px),
    MNIST-5k test digits x4 (112 px), generated scenes; in that order of preference, seeded."""
    out = _debian(_DISTRACT_DEBIAN, max_side)[:n]
    if len(out) < n:
        cifar = load_sample("cifar10", "train").images
        cifar = np.concatenate([cifar, load_sample("cifar10", "test").images])
        k = min(len(cifar), (n - len(out)) * 2 // 3)
        out += [(f"cifar10-{i:04d}", Image.fromarray(a).resize((128, 128), Image.BICUBIC)) for i, a in enumerate(cifar[:k])]
    if len(out) < n:
        digits = load_sample("mnist", "test").images
        k = min(len(digits), (n - len(out)) * 3 // 5)
        out += [(f"mnist-{i:04d}", Image.fromarray(a).convert("RGB").resize((112, 112), Image.BICUBIC))
                for i, a in enumerate(digits[:k])]
    rng = np.random.default_rng(seed)
    i = 0
    while len(out) < n:
        out.append((f"scene-{i:04d}", generated_scene(rng, (int(rng.integers(200, 480)), int(rng.integers(160, 360))))))
        i += 1
    return out


def background_set(n: int = 512, seed: int = 7) -> list[tuple[str, Image.Image]]:
    """The fixed background set of the calibrated copy score (retrieval/calibration.py): unrelated images a query's
    closeness to says how much a cosine means for it. CIFAR-10 sample images from the end of the sample (the
    benchmark distractors take them from the start) x4, MNIST-5k train digits x4 (the distractors use the test
    digits), GCompris's drawings when installed, generated scenes; never a dev or evaluation photo."""
    out: list[tuple[str, Image.Image]] = []
    cifar = np.concatenate([load_sample("cifar10", "train").images, load_sample("cifar10", "test").images])
    out += [(f"bg-cifar10-{i}", Image.fromarray(cifar[i]).resize((128, 128), Image.BICUBIC))
            for i in range(len(cifar) - 1, len(cifar) - 1 - n * 3 // 8, -1)]
    digits = load_sample("mnist", "train").images
    out += [(f"bg-mnist-{i}", Image.fromarray(a).convert("RGB").resize((112, 112), Image.BICUBIC))
            for i, a in enumerate(digits[: n // 4])]
    from .debian_photos import gcompris_drawings

    out += gcompris_drawings()[: n // 4]
    rng = np.random.default_rng(seed)
    i = 0
    while len(out) < n:
        out.append((f"bg-scene-{i}", generated_scene(rng, (int(rng.integers(200, 480)), int(rng.integers(160, 360))))))
        i += 1
    return out[:n]
