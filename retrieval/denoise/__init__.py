"""Denoise a noisy query image before it is embedded: DDPM / DDIM started at the query's noise level, or classical.

The query API is in :mod:`.query`; the networks it runs are here too: the U-Net (:mod:`.unet`), the noise schedules
(:mod:`.schedule`), the DDPM/DDIM samplers and their checkpoints (:mod:`.diffusion`), the noise-level estimators
(:mod:`.sigma`) and the synthetic-noise helpers (:mod:`.noise`). Training lives in ``lookalike.training.ddpm``.
Without torch (the core install) ``denoise_image`` is :mod:`.light`'s: the photo rule of ``--denoise auto``; the
other names then say, in one line, that they need the ``train`` extra.
"""
from __future__ import annotations

from typing import Any

from .base import METHODS, DenoiseError, DenoiseResult, consistency_score

__all__ = ["METHODS", "DenoiseError", "DenoiseResult", "classical_denoise", "consistency_score", "denoise_image",
           "estimate_sigma", "resolve_model", "shipped_models"]


def denoise_image(*args: Any, **kwargs: Any) -> DenoiseResult:
    """:func:`.query.denoise_image` where torch is installed, else :func:`.light.denoise_image` (the photo rule)."""
    from ..runtime import torch_available

    if torch_available():
        from .query import denoise_image as full
    else:
        from .light import denoise_image as full
    return full(*args, **kwargs)


def __getattr__(name: str) -> Any:  # the torch side, imported when first used
    if name in ("classical_denoise", "estimate_sigma", "resolve_model", "shipped_models"):
        from . import query

        return getattr(query, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
