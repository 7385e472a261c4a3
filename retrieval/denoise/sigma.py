"""Noise-level estimators: wavelet median-absolute-deviation (classical) and a small learned CNN, and its checkpoints.

Both return sigma on the [-1, 1] pixel scale. The learned one is trained on noisy images that were clipped to
the valid range and quantised to 8 bits, which is what a real noisy file looks like (clipping biases MAD low).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, read_checkpoint, restore, save_checkpoint

__all__ = ["SigmaNet", "wavelet_sigma", "save_sigma_net", "load_sigma_net"]


def wavelet_sigma(arr: np.ndarray) -> float:
    """Wavelet-MAD (Donoho) noise estimate of a float image in [-1, 1], (H,W) or (H,W,C); [-1, 1] scale."""
    from skimage.restoration import estimate_sigma

    a = (np.asarray(arr, dtype=np.float64) + 1.0) / 2.0
    s = estimate_sigma(a, channel_axis=-1 if a.ndim == 3 else None, average_sigmas=True)
    return float(2.0 * s)


class SigmaNet(nn.Module):
    """Fully convolutional: per-pixel log-sigma and weight maps, pooled by a softmax-weighted mean (any image size)."""

    def __init__(self, width: int = 24, depth: int = 5, meta: dict | None = None) -> None:
        super().__init__()
        self.config = {"width": width, "depth": depth}
        self.meta = dict(meta or {})
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for i in range(depth - 1):
            d = 2 if i % 2 else 1
            layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.ReLU()]
        layers.append(nn.Conv2d(width, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N,1,H,W) in [-1,1] -> log sigma (N,)."""
        out = self.net(x)
        w = torch.softmax(out[:, 1].flatten(1), dim=1)
        return (out[:, 0].flatten(1) * w).sum(1)

    @torch.inference_mode()
    def estimate(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) in [-1,1] -> sigma (N,), channels estimated separately and averaged in log space."""
        n, c = x.shape[:2]
        return self(x.reshape(n * c, 1, *x.shape[-2:])).reshape(n, c).mean(1).exp()


def save_sigma_net(net: SigmaNet, path: str | os.PathLike, meta: dict) -> Path:
    """Write a ``sigma-estimator`` checkpoint with ``meta`` (training data, steps, command)."""
    return save_checkpoint(path, Checkpoint("sigma-estimator", dict(net.config), meta, net.state_dict()))


def load_sigma_net(path: str | os.PathLike) -> SigmaNet:
    """Load a learned estimator; CheckpointError with a one-line reason when the file is not one."""
    ckpt = read_checkpoint(path, kinds=("sigma-estimator",))
    return restore(ckpt, path, lambda cfg: SigmaNet(**cfg, meta=ckpt.metadata)).eval()
