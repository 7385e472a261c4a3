"""The low-frequency signature of an image: the lowest 8x8 DCT coefficients (DC dropped) of its 32x32 grey
picture, as a unit vector (what a perceptual hash thresholds, kept as numbers).

It survives what a neural embedding does not: heavy noise, blur, tiny thumbnails; it breaks under geometric
edits. The calibrated copy score (retrieval/calibration.py) weighs it against the neural score per query. Numpy only.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["SIGNATURE_DIM", "SIGNATURE_BYTES", "lowfreq_signature", "pack_signature", "unpack_signatures"]

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
