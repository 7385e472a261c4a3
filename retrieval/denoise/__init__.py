"""Denoise a noisy query image before it is embedded: DDPM / DDIM started at the query's noise level, or classical.

The query API is in :mod:`.query`; the networks it runs are here too: the U-Net (:mod:`.unet`), the noise schedules
(:mod:`.schedule`), the DDPM/DDIM samplers and their checkpoints (:mod:`.diffusion`), the noise-level estimators
(:mod:`.sigma`) and the synthetic-noise helpers (:mod:`.noise`). Training lives in ``lookalike.training.ddpm``.
"""
from .query import (
    METHODS,
    DenoiseError,
    DenoiseResult,
    classical_denoise,
    consistency_score,
    denoise_image,
    estimate_sigma,
    resolve_model,
    shipped_models,
)

__all__ = ["METHODS", "DenoiseError", "DenoiseResult", "classical_denoise", "consistency_score", "denoise_image",
           "estimate_sigma", "resolve_model", "shipped_models"]
