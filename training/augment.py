"""Augmentations: SimCLR two-view pipeline (PIL) and light geometric jitter for Siamese training (tensors)."""
from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision import transforms as T

__all__ = ["PixelDropout", "simclr_augment", "siamese_augment", "EditAugment"]


class PixelDropout:
    """Set a random share ``p`` of pixels to grey (PIL in, PIL out): a positive-pair augmentation for small images."""

    def __init__(self, p: float = 0.1) -> None:
        self.p = float(p)

    def __call__(self, im: Image.Image) -> Image.Image:
        if self.p <= 0:
            return im
        t = T.functional.pil_to_tensor(im)
        keep = torch.rand(t.shape[1:]) >= self.p
        t = torch.where(keep, t, torch.full_like(t, 128))
        return T.functional.to_pil_image(t)

    def __repr__(self) -> str:
        return f"PixelDropout(p={self.p})"


def simclr_augment(size: int, small: bool = False, pixel_dropout: float = 0.1) -> T.Compose:
    """SimCLR view: random resized crop, flip, colour jitter, grayscale, blur (+ pixel dropout when ``small``).

    Output is a PIL image of ``size`` x ``size``; the backbone's own transform turns it into a tensor.
    """
    steps: list = [
        T.RandomResizedCrop(size, scale=(0.3 if small else 0.2, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if small:
        steps.append(T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.3))
        steps.append(T.RandomApply([PixelDropout(pixel_dropout)], p=0.5))
    else:
        k = max(3, (size // 10) | 1)
        steps.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    return T.Compose(steps)


class EditAugment:
    """Copy-detection view: random photo edits, noise and JPEG from ``lookalike.data.edits`` (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)

    def __call__(self, im: Image.Image) -> Image.Image:
        from lookalike.data.edits import random_edit

        return random_edit(im, self.rng)


def siamese_augment(x: torch.Tensor, grayscale: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batch jitter for from-scratch training: small shifts/rotations (digits) or crop+flip (colour images)."""
    n, _, h, w = x.shape
    g = generator
    if grayscale:
        ang = (torch.rand(n, generator=g) - 0.5) * 2 * (10 * torch.pi / 180)
        scale = 1 + (torch.rand(n, generator=g) - 0.5) * 0.2
        tx, ty = ((torch.rand(2, n, generator=g) - 0.5) * 2 * 0.1 * 2)
        cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        bg = x.amin(dim=(1, 2, 3), keepdim=True)
        return torch.nn.functional.grid_sample(x - bg, grid, align_corners=False, padding_mode="zeros") + bg
    pad = max(1, h // 8)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = torch.empty_like(x)
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    for i in range(n):
        oy, ox = int(offs[i, 0]), int(offs[i, 1])
        crop = padded[i, :, oy:oy + h, ox:ox + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def seed_everything(seed: int) -> None:
    """Fix Python and torch random state (augmentations draw from both)."""
    random.seed(seed)
    torch.manual_seed(seed)
