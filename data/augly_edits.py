"""A broad suite of edited copies made with AugLy 1.0 (Meta's library behind the DISC21 copy-detection queries).

Every kind is ``fn(image, rng) -> image`` with its parameters drawn from ``rng``, so a seed fixes the copy:
``augly_edit(image, "overlay_text", seed=3)``. 32 single augmentations plus three random chains of two or three
of them (``combo2``, ``combo3``, ``combo3-geo``). AugLy ships its fonts, emoji and screenshot templates, so
this runs offline (``pip install augly==1.0.0``, the ``bench`` extra).

AugLy 1.0 (2022) predates Pillow 10 and numpy 1.24; two of its functions need shims, applied on import
(:func:`shim_augly`): ``meme_format`` calls ``FreeTypeFont.getsize_multiline`` (removed in Pillow 10: answered from
``ImageDraw.multiline_textbbox``) and ``perspective_transform`` builds ``np.matrix(..., dtype=np.float)`` (the
alias removed in numpy 1.24: AugLy's two modules get a numpy view with ``float``). The other 31 functions run as
they are.
"""
from __future__ import annotations

import os
import random as _random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["AUGLY_KINDS", "GEOMETRIC_KINDS", "augly_edit", "shim_augly", "augly_available"]

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


class _NumpyWithFloat:
    """numpy, plus the ``np.float`` alias AugLy 1.0 still uses."""

    float = float

    def __getattr__(self, name: str):
        return getattr(np, name)


def _getsize_multiline(self: ImageFont.FreeTypeFont, text: str, *args, **kwargs) -> tuple[int, int]:
    box = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=self)
    return box[2] - box[0], box[3] - box[1]


_SHIMMED = False


def shim_augly():
    """Import ``augly.image`` with the two shims above; returns its ``functional`` module."""
    global _SHIMMED
    import augly.image.functional as F
    if not _SHIMMED:
        from augly.image.utils import bboxes, utils

        if not hasattr(ImageFont.FreeTypeFont, "getsize_multiline"):
            ImageFont.FreeTypeFont.getsize_multiline = _getsize_multiline
        shim = _NumpyWithFloat()
        utils.np = shim
        bboxes.np = shim
        _SHIMMED = True
    return F


def augly_available() -> bool:
    """Whether AugLy imports here."""
    try:
        shim_augly()
        return True
    except ImportError:
        return False


def _assets() -> tuple[str, str, str]:
    from augly.utils import EMOJI_DIR, FONTS_DIR, SCREENSHOT_TEMPLATES_DIR

    return EMOJI_DIR, FONTS_DIR, SCREENSHOT_TEMPLATES_DIR


def _files(folder: str, ext: str) -> list[str]:
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.join(root, n) for n in names if n.endswith(ext)]
    return sorted(out)


_WORDS = ["when you see it", "best day ever", "me on monday", "no way", "wait for it", "do not repost", "lol",
          "original content", "2019 vs now", "who did this", "holiday mood", "SALE -50%"]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _font(rng: np.random.Generator) -> str:
    fonts = [f for f in _files(_assets()[1], ".ttf") if os.path.exists(f[:-4] + ".pkl")]
    return fonts[int(rng.integers(len(fonts)))]


def _other(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A different picture to overlay or paste onto: a generated scene."""
    from .photosets import generated_scene

    return generated_scene(rng, (max(32, size[0]), max(32, size[1])))


def _k(fn_name: str, **fixed) -> Callable:
    def call(im: Image.Image, **kw) -> Image.Image:
        F = shim_augly()
        return getattr(F, fn_name)(im, **fixed, **kw)
    return call


def _meme(im, rng):
    return _k("meme_format")(im, text=str(rng.choice(_WORDS)), font_file=_font(rng), text_color=_colour(rng),
                             caption_height=int(max(20, im.height * rng.uniform(0.12, 0.3))),
                             meme_bg_color=_colour(rng))


def _overlay_text(im, rng):
    n = int(rng.integers(5, 25))
    return _k("overlay_text")(im, text=[int(i) for i in rng.integers(0, 90, n)], font_file=_font(rng),
                              font_size=float(rng.uniform(0.1, 0.3)), opacity=float(rng.uniform(0.6, 1.0)),
                              color=_colour(rng), x_pos=float(rng.uniform(0, 0.5)), y_pos=float(rng.uniform(0, 0.7)))


def _emoji(im, rng):
    emoji = _files(_assets()[0], ".png")
    return _k("overlay_emoji")(im, emoji_path=emoji[int(rng.integers(len(emoji)))], opacity=float(rng.uniform(0.6, 1)),
                               emoji_size=float(rng.uniform(0.15, 0.4)), x_pos=float(rng.uniform(0, 0.6)),
                               y_pos=float(rng.uniform(0, 0.6)))


def _screenshot(im, rng):
    templ = _files(_assets()[2], ".png")
    t = templ[int(rng.integers(len(templ)))]
    return _k("overlay_onto_screenshot")(im, template_filepath=t, crop_src_to_fit=bool(rng.integers(2)))


def _overlay_image(im, rng):
    return _k("overlay_image")(im, overlay=_other(rng, (im.width // 2, im.height // 2)),
                               opacity=float(rng.uniform(0.5, 1.0)), overlay_size=float(rng.uniform(0.2, 0.45)),
                               x_pos=float(rng.uniform(0, 0.6)), y_pos=float(rng.uniform(0, 0.6)))


def _onto_background(im, rng):
    bg = _other(rng, im.size)
    return _k("overlay_onto_background_image")(im, background_image=bg, overlay_size=float(rng.uniform(0.5, 0.85)),
                                               x_pos=float(rng.uniform(0, 0.15)), y_pos=float(rng.uniform(0, 0.15)),
                                               scale_bg=True)


def _crop(im, rng):
    w, h = float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.5, 0.9))
    x, y = float(rng.uniform(0, 1 - w)), float(rng.uniform(0, 1 - h))
    return _k("crop")(im, x1=x, y1=y, x2=x + w, y2=y + h)


def _factor(rng, lo, hi):
    """A factor away from 1: below (lo..0.7) or above (1.5..hi)."""
    return float(rng.uniform(lo, 0.7) if rng.integers(2) else rng.uniform(1.5, hi))


_FILTERS = [ImageFilter.EDGE_ENHANCE_MORE, ImageFilter.EMBOSS, ImageFilter.CONTOUR, ImageFilter.DETAIL,
            ImageFilter.SMOOTH_MORE, ImageFilter.MaxFilter(5), ImageFilter.MinFilter(5), ImageFilter.ModeFilter(5)]

AUGLY_KINDS: dict[str, Edit] = {
    "blur": lambda im, r: _k("blur")(im, radius=float(r.uniform(0.004, 0.02)) * min(im.size)),
    "brightness": lambda im, r: _k("brightness")(im, factor=_factor(r, 0.3, 2.2)),
    "aspect_ratio": lambda im, r: _k("change_aspect_ratio")(im, ratio=float(r.choice([r.uniform(0.5, 0.8),
                                                                                       r.uniform(1.3, 2.0)]))),
    "color_jitter": lambda im, r: _k("color_jitter")(im, brightness_factor=float(r.uniform(0.6, 1.6)),
                                                     contrast_factor=float(r.uniform(0.6, 1.6)),
                                                     saturation_factor=float(r.uniform(0.2, 2.5))),
    "contrast": lambda im, r: _k("contrast")(im, factor=_factor(r, 0.3, 2.5)),
    "palette": lambda im, r: _k("convert_color")(im, mode="P", colors=int(r.integers(8, 64))).convert("RGB"),
    "crop": _crop,
    "jpeg": lambda im, r: _k("encoding_quality")(im, quality=int(r.integers(5, 30))),
    "grayscale": lambda im, r: _k("grayscale")(im),
    "hflip": lambda im, r: _k("hflip")(im),
    "meme": _meme,
    "opacity": lambda im, r: _k("opacity")(im, level=float(r.uniform(0.3, 0.7))),
    "emoji": _emoji,
    "overlay_image": _overlay_image,
    "onto_background": _onto_background,
    "screenshot": _screenshot,
    "stripes": lambda im, r: _k("overlay_stripes")(im, line_width=float(r.uniform(0.1, 0.5)), line_color=_colour(r),
                                                   line_angle=float(r.uniform(-90, 90)),
                                                   line_density=float(r.uniform(0.2, 0.6)),
                                                   line_type=str(r.choice(["solid", "dotted", "dashed"])),
                                                   line_opacity=float(r.uniform(0.4, 1.0))),
    "text": _overlay_text,
    "pad": lambda im, r: _k("pad")(im, w_factor=float(r.uniform(0.1, 0.5)), h_factor=float(r.uniform(0.1, 0.5)),
                                   color=_colour(r)),
    "pad_square": lambda im, r: _k("pad_square")(im, color=_colour(r)),
    "perspective": lambda im, r: _k("perspective_transform")(im, sigma=float(r.uniform(20, 60)) * min(im.size) / 500,
                                                             seed=int(r.integers(1 << 30))),
    "pixelize": lambda im, r: _k("pixelization")(im, ratio=float(r.uniform(0.1, 0.4))),
    "noise": lambda im, r: _k("random_noise")(im, var=float(r.uniform(0.005, 0.05)), seed=int(r.integers(1 << 30))),
    "resize": lambda im, r: _k("resize")(im, width=max(8, int(im.width * r.uniform(0.3, 0.8))),
                                         height=max(8, int(im.height * r.uniform(0.3, 0.8)))),
    "rotate": lambda im, r: _k("rotate")(im, degrees=float(r.choice([-1, 1]) * r.uniform(10, 90))),
    "saturation": lambda im, r: _k("saturation")(im, factor=float(r.choice([r.uniform(0.0, 0.4), r.uniform(2, 5)]))),
    "scale": lambda im, r: _k("scale")(im, factor=float(r.uniform(0.08, 0.3))),
    "sharpen": lambda im, r: _k("sharpen")(im, factor=float(r.uniform(3, 20))),
    "shuffle_pixels": lambda im, r: _k("shuffle_pixels")(im, factor=float(r.uniform(0.05, 0.3)),
                                                         seed=int(r.integers(1 << 30))),
    "skew": lambda im, r: _k("skew")(im, skew_factor=float(r.choice([-1, 1]) * r.uniform(0.2, 0.8)),
                                     axis=int(r.integers(2))),
    "vflip": lambda im, r: _k("vflip")(im),
    "pil_filter": lambda im, r: _k("apply_pil_filter")(im, filter_type=_FILTERS[int(r.integers(len(_FILTERS)))]),
}
# kinds that move pixels: combo3-geo chains one of these with two others
GEOMETRIC_KINDS = ("aspect_ratio", "crop", "hflip", "pad", "pad_square", "perspective", "rotate", "skew", "vflip",
                   "screenshot", "onto_background")
SINGLE_KINDS = tuple(AUGLY_KINDS)


def _chain(n: int, geometric: bool = False) -> Edit:
    def edit(im: Image.Image, rng: np.random.Generator) -> Image.Image:
        pool = [k for k in SINGLE_KINDS if k not in ("scale", "resize")]  # the chain's size stays a photo's
        names = list(rng.choice([k for k in pool if k not in GEOMETRIC_KINDS], n - 1 if geometric else n,
                                replace=False))
        if geometric:
            names.insert(int(rng.integers(n)), str(rng.choice(GEOMETRIC_KINDS)))
        for name in names:
            im = AUGLY_KINDS[str(name)](im, rng).convert("RGB")
        return im
    return edit


AUGLY_KINDS.update({"combo2": _chain(2), "combo3": _chain(3), "combo3-geo": _chain(3, geometric=True)})


def augly_edit(image: Image.Image, kind: str, seed: int = 0) -> Image.Image:
    """``image`` edited by the AugLy kind ``kind`` with parameters drawn from ``seed`` (RGB out)."""
    if kind not in AUGLY_KINDS:
        raise ValueError(f"unknown AugLy edit '{kind}' (choose from {', '.join(AUGLY_KINDS)})")
    state = _random.getstate()  # a few AugLy functions draw from Python's random module
    try:
        for attempt in range(5):
            _random.seed(seed + attempt)
            try:
                out = AUGLY_KINDS[kind](image.convert("RGB"), np.random.default_rng(seed if attempt == 0 else [seed, attempt]))
                break
            except RuntimeError:  # FreeType/raqm cannot lay out some font + character pairs: draw again
                if attempt == 4:
                    raise
    finally:
        _random.setstate(state)
    return out.convert("RGB")
