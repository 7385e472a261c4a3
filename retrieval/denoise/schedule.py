"""Diffusion noise schedules (T steps) and the mapping between a query's noise level and a diffusion step."""
from __future__ import annotations

import math

import torch

__all__ = ["NoiseSchedule", "make_betas"]


def make_betas(kind: str = "linear", T: int = 1000) -> torch.Tensor:
    """Per-step betas (float64) of the ``linear`` (Ho et al.) or ``cosine`` (Nichol & Dhariwal) schedule."""
    if kind == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule '{kind}' (choose linear or cosine)")


class NoiseSchedule:
    """Betas, cumulative alphas and noise-level lookups for a T-step DDPM (steps indexed 0..T-1)."""

    def __init__(self, kind: str = "linear", T: int = 1000) -> None:
        self.kind = kind
        self.T = int(T)
        self.betas = make_betas(kind, self.T)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # abar_t, float64
        # noise-to-signal ratio of x_t / sqrt(abar_t): the sigma of y = x + sigma * n this step corresponds to
        self.sigmas = torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)

    def abar(self, t: int) -> float:
        """abar_t; t = -1 means the clean image (1.0)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def sigma_of_t(self, t: int) -> float:
        """Noise level (pixel scale [-1, 1]) equivalent to step t: sqrt(1 - abar_t) / sqrt(abar_t)."""
        return 0.0 if t < 0 else float(self.sigmas[t])

    def t_of_sigma(self, sigma: float) -> int:
        """Step t* whose noise level is closest to ``sigma``; -1 when sigma is below the first step's level."""
        sigma = float(sigma)
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
        if sigma < 0.5 * float(self.sigmas[0]):
            return -1
        idx = int(torch.searchsorted(self.sigmas, torch.tensor([sigma], dtype=torch.float64)).item())
        if idx >= self.T:
            return self.T - 1
        if idx > 0 and abs(float(self.sigmas[idx - 1]) - sigma) <= abs(float(self.sigmas[idx]) - sigma):
            return idx - 1
        return idx

    def to_dict(self) -> dict:
        return {"kind": self.kind, "T": self.T}
