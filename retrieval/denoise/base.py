"""What query denoising shares with the core install (no torch): the methods, the result, the errors, the photo rule's
constants and the image helpers. The networks are in :mod:`.query` (torch) and :mod:`.light` (the photo rule run
from the shipped ONNX noise estimator).

The photo rule's constants, chosen on the dev photos only (figures: docs/benchmarks.md section 6.2; how they were
chosen: docs/history/benchmarks-2026-11.md section 11.5, "a per-query rule for the low-frequency channel"):

- ``AUTO_FUSE_SIGMA``: ``auto`` on a photo fuses the low-frequency channel above this estimated sigma, else
  searches the query as it is (no denoising: non-local means did worse).
- ``AUTO_LOWFREQ_WEIGHT``: the weight of that fusion.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError

__all__ = ["check_request", "METHODS", "AUTO_FUSE_SIGMA", "AUTO_LOWFREQ_WEIGHT", "DenoiseError", "DenoiseInfo", "DenoiseResult",
           "consistency_score", "to_array", "is_gray", "check_image"]

METHODS = ("auto", "ddpm", "ddim", "classical")
AUTO_FUSE_SIGMA = 0.2       # [-1, 1] scale; a photo above it fuses the low-frequency channel (no shipped DDPM fits)
AUTO_LOWFREQ_WEIGHT = 1.0   # the weight of that fusion
_GRAY_TOL = 3.0  # mean |channel difference| (0-255) below which an RGB image counts as grayscale


class DenoiseError(LookalikeError, ValueError):
    """Bad denoising input: unknown method, bad sigma, unusable model."""


class DenoiseInfo(TypedDict):
    """How a query was denoised, as JSON (:meth:`DenoiseResult.to_dict`)."""

    method: str
    sigma: float
    sigma_estimated: bool
    model: str | None
    fallback_reason: str | None
    samples: int
    lowfreq_weight: float
    ms: float


@dataclass
class DenoiseResult:
    """A denoised query and how it was made."""

    image: Image.Image               # denoised RGB image, same size as the input
    method: str                      # method actually used: "ddpm" | "ddim" | "classical" | "lowfreq" | "none"
    sigma: float                     # noise level used (pixel scale [-1,1], y = x + sigma*n)
    sigma_estimated: bool            # True when estimated automatically
    model: str | None                # denoiser checkpoint name/path used, None for classical
    fallback_reason: str | None      # why the DDPM was not used, else None
    samples: list[Image.Image] = field(default_factory=list)  # all drawn samples (len >= 1)
    ms: float = 0.0                  # wall time
    lowfreq_weight: float = 0.0      # > 0: search fuses the low-frequency channel with this weight (method "lowfreq")

    def to_dict(self) -> DenoiseInfo:
        """How the query was denoised, without the images (for JSON)."""
        return {"method": self.method, "sigma": self.sigma, "sigma_estimated": self.sigma_estimated,
                "model": self.model, "fallback_reason": self.fallback_reason, "samples": len(self.samples),
                "lowfreq_weight": self.lowfreq_weight, "ms": round(self.ms, 1)}


def to_array(image: Image.Image) -> tuple[np.ndarray, bool]:
    """RGB float array in [-1, 1] (H,W,3) and whether it is grayscale-like."""
    from lookalike.indexer.loading import to_rgb

    rgb = np.asarray(to_rgb(image), dtype=np.float32)
    gray = bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() < _GRAY_TOL)
    return rgb / 127.5 - 1.0, gray


def is_gray(image: Image.Image) -> bool:
    """Whether an image is grayscale-like, judged on a copy of at most 256 px (as :func:`to_array` judges)."""
    if max(image.size) > 256:
        image = image.copy()
        image.thumbnail((256, 256), Image.BOX)
    return to_array(image)[1]


def check_image(image: Image.Image) -> None:
    if not isinstance(image, Image.Image):
        raise DenoiseError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 8 or image.height < 8:
        raise DenoiseError(f"image {image.width}x{image.height}: too small to denoise (min 8x8)")


def check_request(image: Image.Image, method: str, sigma: float | str, n_samples: int, steps: int | None) -> bool:
    """DenoiseError with a one-line reason for a bad request; True when ``sigma`` is to be estimated."""
    check_image(image)
    if method not in METHODS:
        raise DenoiseError(f"--method {method}: unknown (choose {', '.join(METHODS)})")
    if int(n_samples) < 1 or int(n_samples) > 64:
        raise DenoiseError(f"--samples {n_samples}: must be between 1 and 64")
    if steps is not None and (int(steps) < 1 or int(steps) > 1000):
        raise DenoiseError(f"--steps {steps}: must be between 1 and 1000")
    if isinstance(sigma, str):
        if sigma != "auto":
            raise DenoiseError(f"--sigma {sigma}: expected 'auto' or a number >= 0")
        return True
    if not np.isfinite(float(sigma)) or float(sigma) < 0:
        raise DenoiseError(f"--sigma {sigma}: expected 'auto' or a number >= 0")
    return False


def consistency_score(neighbour_id_lists: list[list[int]]) -> float:
    """Agreement of the samples' nearest neighbours, 0..1: mean pairwise overlap of their top-k id lists."""
    lists = [list(x) for x in neighbour_id_lists]
    if len(lists) <= 1:
        return 1.0
    scores = []
    for a, b in itertools.combinations(lists, 2):
        k = max(len(a), len(b))
        scores.append(len(set(a) & set(b)) / k if k else 1.0)
    return float(np.mean(scores))
