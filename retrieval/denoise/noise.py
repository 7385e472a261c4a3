"""Synthetic noisy queries and image-quality measures shared by the UI, training reports, tests and the benchmark."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["add_noise", "add_noise_image", "psnr", "to_unit", "from_unit"]


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W) or (N,H,W,C) -> float NCHW in [-1, 1]."""
    arr = torch.from_numpy(np.array(images, copy=True)).float()
    if arr.dim() == 3:
        arr = arr[:, None]
    else:
        arr = arr.permute(0, 3, 1, 2)
    return arr / 127.5 - 1.0


def from_unit(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 (N,H,W) for one channel, (N,H,W,C) otherwise (rounded, clipped)."""
    a = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, realistic: bool = True) -> torch.Tensor:
    """y = x + sigma * n on the [-1, 1] scale; ``realistic`` clips to [-1, 1] and quantises to 8 bits, as an image file would."""
    y = x + float(sigma) * torch.randn(x.shape, generator=generator)
    if realistic:
        y = ((y.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    return y


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak range 2)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def add_noise_image(im: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """:func:`add_noise` on a PIL image (RGB out); a grayscale-looking image gets the same noise in every channel."""
    a = np.asarray(im.convert("RGB"))
    gray = bool((a == a[..., :1]).all())
    y = add_noise(to_unit((a[..., 0] if gray else a)[None]), sigma, torch.Generator().manual_seed(int(seed)))
    return Image.fromarray(from_unit(y)[0]).convert("RGB")
