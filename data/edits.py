"""Photo edits and noise models: what a user does to a copy of a picture (benchmarks) and training augmentations.

Every edit is ``fn(image, strength, rng) -> image`` with ``strength`` in [0, 1] (``MILD`` and ``STRONG`` are the
benchmark settings) and a numpy ``Generator`` for its random choices, so a seed fixes the result. PIL/numpy only.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = ["EDITS", "MILD", "STRONG", "apply_edit", "random_edit", "gaussian_noise", "poisson_noise", "jpeg",
           "NOISES", "apply_noise"]

MILD, STRONG = 0.35, 1.0


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


def _lerp(lo: float, hi: float, s: float) -> float:
    return lo + (hi - lo) * float(np.clip(s, 0.0, 1.0))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """Re-save as JPEG at ``quality`` and decode again."""
    buf = io.BytesIO()
    _rgb(im).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def crop(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Keep a random window of 85% (s=0) down to 40% (s=1) of each side."""
    im = _rgb(im)
    f = _lerp(0.85, 0.4, s)
    w, h = im.size
    cw, ch = max(8, int(w * f)), max(8, int(h * f))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def rotate(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Rotate by up to 90 degrees (a quarter turn at s=1), keeping the whole picture on a black canvas."""
    angle = 90.0 if s >= 0.999 else _lerp(3.0, 45.0, s)
    return _rgb(im).rotate(float(angle * rng.choice([-1, 1])), resample=Image.BICUBIC, expand=True)


def mirror(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Left-right mirror; from s>=0.5 also upside down."""
    out = ImageOps.mirror(_rgb(im))
    return ImageOps.flip(out) if s >= 0.5 else out


def greyscale(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Remove 60% (s=0) to all (s=1) of the colour; s=1 is a plain greyscale copy."""
    im = _rgb(im)
    return ImageEnhance.Color(im).enhance(1.0 - _lerp(0.6, 1.0, s))


def blur(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur with radius 0.3% (s=0) to 2% (s=1) of the shorter side."""
    im = _rgb(im)
    return im.filter(ImageFilter.GaussianBlur(_lerp(0.003, 0.02, s) * min(im.size)))


_WORDS = ["when you see it", "best day ever", "SALE -50%", "me on monday", "lol", "no way", "2019 vs now",
          "original content", "do not repost", "holiday", "who did this", "wait for it"]


def caption(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Overlay meme-style text: one line at the bottom (mild) to several large lines across the picture."""
    im = _rgb(im).copy()
    w, h = im.size
    draw = ImageDraw.Draw(im)
    lines = 1 + int(round(_lerp(0, 3, s)))
    size = max(8, int(min(w, h) * _lerp(0.06, 0.14, s)))
    font = ImageFont.load_default(size=size)
    for i in range(lines):
        text = str(rng.choice(_WORDS))
        y = h - (i + 1) * int(size * 1.3) - size // 2 if i == 0 else int(rng.uniform(0.05, 0.75) * h)
        x = int(rng.uniform(0.02, 0.3) * w)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.text((x, y), text, font=font, fill=fill, stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return im


def letterbox(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Pad with bars (black or a flat colour) that add 25% (s=0) to 120% (s=1) of the long side."""
    im = _rgb(im)
    w, h = im.size
    pad = int(max(w, h) * _lerp(0.25, 1.2, s))
    colour = (0, 0, 0) if s < 0.5 else tuple(int(c) for c in rng.integers(0, 256, 3))
    if w >= h:  # bars above and below, as a landscape picture in a portrait frame
        canvas = Image.new("RGB", (w, h + pad), colour)
        canvas.paste(im, (0, pad // 2))
    else:
        canvas = Image.new("RGB", (w + pad, h), colour)
        canvas.paste(im, (pad // 2, 0))
    return canvas


def colour_shift(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Hue rotation, saturation, brightness and contrast changes (a filter app)."""
    im = _rgb(im)
    hsv = np.asarray(im.convert("HSV"), dtype=np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + int(rng.choice([-1, 1]) * _lerp(12, 70, s))) % 256
    out = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    out = ImageEnhance.Color(out).enhance(_lerp(1.2, 1.8, s))
    out = ImageEnhance.Brightness(out).enhance(1.0 + float(rng.choice([-1, 1])) * _lerp(0.1, 0.3, s))
    return ImageEnhance.Contrast(out).enhance(_lerp(1.1, 1.5, s))


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array([c for p in src for c in p], dtype=np.float64)
    return np.linalg.solve(np.array(a, dtype=np.float64), b).tolist()


def tilt(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Perspective warp, as a photo of a screen or print taken at an angle: corners move 4% (s=0) to 18% (s=1)."""
    im = _rgb(im)
    w, h = im.size
    d = _lerp(0.04, 0.18, s)
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [(x + rng.uniform(0, d) * w * (1 if x == 0 else -1), y + rng.uniform(0, d) * h * (1 if y == 0 else -1))
             for x, y in corners]
    return im.transform((w, h), Image.PERSPECTIVE, _perspective_coeffs(corners, moved), Image.BICUBIC)


def thumbnail(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """A small re-saved copy: long side 160 px (s=0) down to 64 px (s=1), JPEG quality 80 down to 50."""
    im = _rgb(im)
    side = int(round(_lerp(160, 64, s)))
    w, h = im.size
    f = side / max(w, h)
    small = im.resize((max(4, round(w * f)), max(4, round(h * f))), Image.BILINEAR)
    return jpeg(small, int(round(_lerp(80, 50, s))))


def jpeg_edit(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """Heavy JPEG: quality 30 (s=0) down to 10 (s=1)."""
    return jpeg(im, int(round(_lerp(30, 10, s))))


def screenshot(im: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    """A screen capture: shown at 70% (s=0) to 35% (s=1) size inside window chrome, nearest-neighbour rescaled."""
    im = _rgb(im)
    w, h = im.size
    f = _lerp(0.7, 0.35, s)
    shown = im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR)
    bar, margin = max(6, int(h * f * 0.08)), max(4, int(w * f * _lerp(0.03, 0.25, s)))
    sw, sh = shown.size
    canvas = Image.new("RGB", (sw + 2 * margin, sh + bar + 2 * margin), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, bar), fill=(60, 63, 65))
    for i in range(3):
        r = bar // 3
        draw.ellipse((r + i * 3 * r, r, 3 * r + i * 3 * r, 2 * r), fill=((230, 80, 70), (240, 190, 60), (90, 200, 80))[i])
    canvas.paste(shown, (margin, bar + margin))
    scale = _lerp(1.25, 1.5, s)  # a HiDPI capture resampled without smoothing
    return canvas.resize((int(canvas.width * scale), int(canvas.height * scale)), Image.NEAREST)


EDITS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "crop": crop, "rotate": rotate, "mirror": mirror, "greyscale": greyscale, "blur": blur, "caption": caption,
    "letterbox": letterbox, "colour": colour_shift, "tilt": tilt, "thumbnail": thumbnail, "jpeg": jpeg_edit,
    "screenshot": screenshot,
}


def apply_edit(im: Image.Image, name: str, strength: float | str = "mild", seed: int = 0) -> Image.Image:
    """Apply the edit ``name`` at ``strength`` ("mild", "strong" or a number in [0, 1]); the same seed, the same copy."""
    if name not in EDITS:
        raise ValueError(f"unknown edit '{name}' (choose {', '.join(EDITS)})")
    s = {"mild": MILD, "strong": STRONG}.get(strength, strength) if isinstance(strength, str) else float(strength)
    if isinstance(s, str):
        raise ValueError(f"unknown strength '{strength}' (mild, strong or a number in [0, 1])")
    return EDITS[name](im, float(s), np.random.default_rng(seed))


def gaussian_noise(im: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Add Gaussian noise with standard deviation ``sigma`` on the 0..1 scale, clipped, back to 8 bits."""
    a = np.asarray(_rgb(im), dtype=np.float32) / 255.0
    a = np.clip(a + rng.normal(0.0, float(sigma), a.shape).astype(np.float32), 0.0, 1.0)
    return Image.fromarray(np.round(a * 255.0).astype(np.uint8), "RGB")


def poisson_noise(im: Image.Image, peak: float, rng: np.random.Generator) -> Image.Image:
    """Shot noise: each channel value is a Poisson photon count with ``peak`` photons at full white."""
    a = np.asarray(_rgb(im), dtype=np.float64) / 255.0
    a = np.clip(rng.poisson(a * float(peak)) / float(peak), 0.0, 1.0)
    return Image.fromarray(np.round(a * 255.0).astype(np.uint8), "RGB")


# name -> (kind, parameter): the noisy-photo benchmark's levels
NOISES: dict[str, tuple[str, float]] = {
    "gauss-0.1": ("gauss", 0.1), "gauss-0.25": ("gauss", 0.25), "gauss-0.5": ("gauss", 0.5),
    "gauss-0.75": ("gauss", 0.75), "gauss-1.0": ("gauss", 1.0), "poisson-20": ("poisson", 20.0),
    "poisson-5": ("poisson", 5.0), "gauss-0.25+jpeg-30": ("gauss+jpeg", 0.25),
}


def apply_noise(im: Image.Image, name: str, seed: int = 0) -> Image.Image:
    """Apply the noise level ``name`` from ``NOISES`` (Gaussian sigma on 0..1, Poisson peak, or noise then JPEG q30)."""
    if name not in NOISES:
        raise ValueError(f"unknown noise '{name}' (choose {', '.join(NOISES)})")
    kind, p = NOISES[name]
    rng = np.random.default_rng(seed)
    if kind == "poisson":
        return poisson_noise(im, p, rng)
    out = gaussian_noise(im, p, rng)
    return jpeg(out, 30) if kind == "gauss+jpeg" else out


def random_edit(im: Image.Image, rng: np.random.Generator, max_edits: int = 2, noise_p: float = 0.3) -> Image.Image:
    """A training view: 1..``max_edits`` random edits at random strengths, then sometimes Gaussian noise and JPEG."""
    names = list(EDITS)
    for name in rng.choice(names, size=int(rng.integers(1, max_edits + 1)), replace=False):
        im = EDITS[str(name)](im, float(rng.uniform(0.0, 1.0)), rng)
    if rng.random() < noise_p:
        im = gaussian_noise(im, float(rng.uniform(0.02, 0.6)), rng)
    if rng.random() < noise_p:
        im = jpeg(im, int(rng.integers(10, 60)))
    return _rgb(im)
