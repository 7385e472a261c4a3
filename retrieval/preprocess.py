"""How a PIL image becomes a model input: ``PreprocessConfig``, with a numpy/PIL path that needs no torch.

The numpy path (``resize`` / ``to_uint8`` / ``normalize``) gives the same arrays as the torchvision transform
(``build_transform``) within 1e-5 (tests/test_runtime.py); the query path of a compiled model uses it alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

__all__ = ["PreprocessConfig"]

_PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a PIL image becomes a model input (resolved from the model's data config)."""

    input_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    grayscale: bool = False

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(x) for x in d[k])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def resize(self, im: Image.Image) -> Image.Image:
        """PIL image -> PIL image at the input size (grayscale if configured), as ``build_resize`` without torch."""
        if self.grayscale:
            im = im.convert("L")
        size, resample = self.input_size, _PIL_FILTERS.get(self.interpolation, Image.Resampling.BICUBIC)
        if self.crop_pct >= 1.0:
            return im.resize((size, size), resample)
        short = int(round(size / self.crop_pct))
        w, h = im.size
        new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        im = im.resize(new, resample)
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
        return im.crop((left, top, left + size, top + size))

    def to_uint8(self, im: Image.Image) -> np.ndarray:
        """PIL RGB image -> resized CHW uint8 array."""
        arr = np.asarray(self.resize(im), dtype=np.uint8)
        return arr[None].copy() if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))  # writable

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NCHW array -> float32, as ToTensor + Normalize would give."""
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (batch.astype(np.float32) / np.float32(255.0) - mean) / std

    def build_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """A torchvision transform: resize (+ centre crop), to tensor, normalise."""
        from torchvision import transforms as T

        return T.Compose([self.build_resize(), T.ToTensor(), T.Normalize(self.mean, self.std)])

    def build_resize(self) -> Callable[[Image.Image], Image.Image]:
        """The geometric part alone: PIL image -> PIL image at the input size (grayscale if configured)."""
        from torchvision import transforms as T

        interp = {
            "bicubic": T.InterpolationMode.BICUBIC,
            "bilinear": T.InterpolationMode.BILINEAR,
            "nearest": T.InterpolationMode.NEAREST,
        }.get(self.interpolation, T.InterpolationMode.BICUBIC)
        size = self.input_size
        steps: list = []
        if self.grayscale:
            steps.append(T.Grayscale(num_output_channels=1))
        if self.crop_pct < 1.0:
            steps += [T.Resize(int(round(size / self.crop_pct)), interpolation=interp), T.CenterCrop(size)]
        else:
            steps.append(T.Resize((size, size), interpolation=interp, antialias=True))
        return T.Compose(steps)

    def normalize_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW batch -> float batch, exactly as ToTensor + Normalize would give."""
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        return batch.float().div_(255.0).sub_(mean).div_(std)
