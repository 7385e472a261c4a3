"""The low-frequency signature of an image: the lowest 8x8 DCT coefficients (DC dropped) of its 32x32 grey
picture, as a unit vector (what a perceptual hash thresholds, kept as numbers).

It survives what a neural embedding does not: heavy noise, blur, tiny thumbnails (docs/benchmarks.md section 11:
fused with weight 1 it finds every noisy eval photo up to sigma 1.0, where the embedding alone finds 4-5 of 15).
It breaks under geometric edits, so search fuses it only for queries that call for it. Numpy only.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["SIGNATURE_DIM", "SIGNATURE_BYTES", "lowfreq_signature", "pack_signature", "unpack_signatures",
           "detail_level", "noise_level"]

_SIDE = 32
_KEEP = 8
SIGNATURE_DIM = _KEEP * _KEEP - 1
SIGNATURE_BYTES = 2 * SIGNATURE_DIM  # stored as float16


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is ``scipy.fft.dct(x, norm="ortho")``."""
    k = np.arange(n)[:, None]
    d = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float64)


_D = _dct_matrix(_SIDE)[:_KEEP]  # only the low rows are ever needed


def lowfreq_signature(image: Image.Image) -> np.ndarray:
    """Unit float32 vector of the 63 lowest DCT coefficients of the 32x32 grey (box-averaged) image."""
    g = np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.BOX), dtype=np.float64)
    c = (_D @ g @ _D.T).ravel()[1:]
    n = float(np.linalg.norm(c))
    return (c / n if n > 1e-9 else np.zeros_like(c)).astype(np.float32)


def pack_signature(sig: np.ndarray) -> bytes:
    """The stored form: float16 bytes (126 bytes per image)."""
    return np.asarray(sig, np.float16).tobytes()


def unpack_signatures(blobs: list[bytes]) -> np.ndarray:
    """(N, 63) float32 matrix of stored signatures."""
    if not blobs:
        return np.zeros((0, SIGNATURE_DIM), np.float32)
    return np.frombuffer(b"".join(blobs), np.float16).reshape(len(blobs), SIGNATURE_DIM).astype(np.float32)


def detail_level(image: Image.Image, side: int = 128) -> float:
    """Share of the grey picture's variance (at ``side`` px on the long side) that a 3x3 box blur removes: on the
    dev photos 0.004-0.14 (median 0.03) as they are, at most 0.002 for nine in ten after a strong blur."""
    g = image.convert("L")
    f = side / max(g.size)
    if f < 1:
        g = g.resize((max(3, round(g.width * f)), max(3, round(g.height * f))), Image.BOX)
    a = np.asarray(g, np.float64)
    var = float(a.var())
    if a.shape[0] < 3 or a.shape[1] < 3 or var < 1e-6:
        return 0.0
    p = np.pad(a, 1, mode="edge")
    blur = sum(p[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3)) / 9.0
    return float(((a - blur) ** 2).mean() / var)


def noise_level(image: Image.Image, side: int = 512) -> float:
    """Pixel noise of the grey picture (Immerkaer's Laplacian-difference estimate, 0..1 scale) on a centre crop of
    at most ``side`` px: a few ms, numpy only. Edges count as noise too, so it ranks noisy copies of one picture,
    and tells photos with added noise from clean or edited ones only at a threshold measured on real photos."""
    g = image.convert("L")
    w, h = g.size
    if w > side or h > side:
        left, top = max(0, (w - side) // 2), max(0, (h - side) // 2)
        g = g.crop((left, top, min(w, left + side), min(h, top + side)))
    a = np.asarray(g, np.float64) / 255.0
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = (a[:-2, :-2] + a[:-2, 2:] + a[2:, :-2] + a[2:, 2:] - 2 * (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2]
           + a[1:-1, 2:]) + 4 * a[1:-1, 1:-1])
    return float(np.sqrt(np.pi / 2) * np.abs(lap).mean() / 6.0)
