"""DDPM around a U-Net: reverse processes (ancestral DDPM, DDIM) started from a noisy query, checkpoints."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoint import Checkpoint, read_checkpoint, restore, save_checkpoint
from .schedule import NoiseSchedule
from .unet import UNet

__all__ = ["Diffusion", "build_diffusion", "save_diffusion", "load_diffusion"]


class Diffusion(nn.Module):
    """A noise-predicting U-Net plus its T-step schedule; images are float tensors in [-1, 1], NCHW.

    ``image_size`` None marks a fully convolutional model trained on patches (any size; :meth:`denoise_tiled`).
    """

    def __init__(self, unet: UNet, schedule: NoiseSchedule, image_size: int | None, meta: dict | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.schedule = schedule
        self.image_size = None if image_size is None else int(image_size)
        self.channels = unet.in_channels
        self.meta = dict(meta or {})
        # the noise prediction: the U-Net, or the same network compiled for this CPU (retrieval/denoise/compiled.py)
        self.eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        ab = schedule.alphas_cumprod
        self.register_buffer("abar", ab.float(), persistent=False)

    @property
    def any_size(self) -> bool:
        """True for a patch-trained, fully convolutional model (checkpoint ``image_size`` None)."""
        return self.image_size is None

    # ---- reverse processes ------------------------------------------------------------
    def t_star(self, sigma: float | torch.Tensor, n: int) -> torch.Tensor:
        """Per-image start step t* (N,) for noise level(s) sigma; -1 where sigma is below the first step."""
        sig = torch.as_tensor(sigma, dtype=torch.float64).flatten()
        if sig.numel() == 1:
            sig = sig.expand(n)
        if sig.numel() != n:
            raise ValueError(f"got {sig.numel()} sigmas for {n} images")
        return torch.tensor([self.schedule.t_of_sigma(float(v)) for v in sig], dtype=torch.long)

    @torch.inference_mode()
    def denoise(self, y: torch.Tensor, sigma: float | torch.Tensor, method: str = "ddim", steps: int = 20,
                eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Clean a noisy batch y = x + sigma * n (pixels in [-1, 1]), sigma scalar or per image.

        Each image starts at the step t* whose noise level equals its sigma, scaled by sqrt(abar_t*), not from
        pure noise. ``ddim`` runs S deterministic DDIM steps spaced from t* to 0 (eta=0); ``ddpm`` runs ancestral
        sampling on the schedule respaced to the same S steps (S >= t*+1 gives the full ancestral chain).
        """
        t_star = self.t_star(sigma, y.shape[0])
        out = y.clamp(-1, 1).clone()
        todo = t_star >= 0
        if not bool(todo.any()):
            return out
        ts = self.step_table(t_star[todo], steps)
        a0 = self.abar[ts[:, 0]].view(-1, 1, 1, 1)
        out[todo] = self._reverse(y[todo] * a0.sqrt(), ts, method, eta, generator)
        return out

    def step_table(self, t_star: torch.Tensor, steps: int) -> torch.Tensor:
        """(N, S) descending steps from each t* to 0 (rows with t*+1 < S repeat steps, which is harmless)."""
        S = max(1, int(steps))
        frac = torch.linspace(1, 0, S, dtype=torch.float64)
        return (t_star.double()[:, None] * frac[None]).round().long()

    def step_sequence(self, t_start: int, steps: int) -> list[int]:
        """Descending, distinct steps from t_start to 0 (at most ``steps`` of them)."""
        return sorted(set(self.step_table(torch.tensor([t_start]), steps)[0].tolist()), reverse=True)

    @torch.inference_mode()
    def sample(self, n: int, steps: int = 50, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate from pure noise with DDIM (for sample grids)."""
        size = self.image_size or int(self.meta.get("patch", 64))
        x = torch.randn(n, self.channels, size, size, generator=generator)
        ts = self.step_table(torch.full((n,), self.schedule.T - 1), steps)
        return self._reverse(x, ts, "ddim", 0.0, generator)

    @torch.inference_mode()
    def denoise_tiled(self, y: torch.Tensor, sigma: float, steps: int = 1, tile: int = 256, overlap: int = 32,
                      method: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`denoise` (DDIM by default) of one image (1,C,H,W) of any size, in overlapping tiles blended by linear ramps.

        Tiles are ``tile`` px (smaller images run whole), neighbours overlap by ``overlap`` px, and each output
        pixel is the weighted mean of the tiles covering it, with weights falling to ~0 at a tile's inner edges,
        so GroupNorm's per-tile statistics leave no seams. Tiles run in batches of 16.
        """
        _, c, H, W = y.shape
        th, tw = min(tile, H), min(tile, W)
        tops, lefts = _starts(H, th, overlap), _starts(W, tw, overlap)
        if len(tops) == 1 and len(lefts) == 1:
            return self.denoise(y, sigma, method, steps, eta, generator)
        boxes = [(t, x0) for t in tops for x0 in lefts]
        out = torch.zeros(1, c, H, W)
        wsum = torch.zeros(1, 1, H, W)
        for i in range(0, len(boxes), 16):  # bounded memory: 16 tiles at a time
            chunk = boxes[i : i + 16]
            den = self.denoise(torch.cat([y[:, :, t : t + th, x0 : x0 + tw] for t, x0 in chunk]), sigma, method, steps,
                               eta, generator)
            for (t, x0), d in zip(chunk, den):
                wgt = (_ramp(th, overlap, t == 0, t + th == H)[:, None] * _ramp(tw, overlap, x0 == 0, x0 + tw == W)[None])
                out[..., t : t + th, x0 : x0 + tw] += d * wgt
                wsum[..., t : t + th, x0 : x0 + tw] += wgt
        return out / wsum.clamp_min(1e-8)

    def _reverse(self, x: torch.Tensor, ts: torch.Tensor, method: str, eta: float,
                 generator: torch.Generator | None) -> torch.Tensor:
        if method not in ("ddim", "ddpm"):
            raise ValueError(f"unknown reverse process '{method}' (choose ddpm or ddim)")
        if method == "ddpm":
            eta = 1.0  # ancestral sampling on the respaced schedule == DDIM with eta = 1
        S = ts.shape[1]
        x0 = x
        for i in range(S):
            t = ts[:, i]
            a_t = self.abar[t].view(-1, 1, 1, 1)
            eps = (self.eps_fn or self.unet)(x, t)
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
            if i + 1 == S:
                break
            a_s = self.abar[ts[:, i + 1]].view(-1, 1, 1, 1)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # consistent with the clipped x0
            sig = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).clamp_min(0).sqrt()
            x = a_s.sqrt() * x0 + (1 - a_s - sig ** 2).clamp_min(0).sqrt() * eps
            if eta > 0:
                x = x + sig * torch.randn(x.shape, generator=generator)
        return x0

    # ---- persistence -------------------------------------------------------------------
    def config(self) -> dict:
        """Architecture and domain: U-Net, schedule, image size and channels."""
        return {"unet": dict(self.unet.config), "schedule": self.schedule.to_dict(), "image_size": self.image_size,
                "channels": self.channels}

    @classmethod
    def from_config(cls, cfg: dict, meta: dict | None = None) -> "Diffusion":
        """An untrained DDPM of the architecture ``cfg`` (as :meth:`config` gives it)."""
        size = cfg["image_size"]
        return cls(UNet(**cfg["unet"]), NoiseSchedule(cfg["schedule"]["kind"], int(cfg["schedule"]["T"])),
                   None if size is None else int(size), meta)

    def describe(self) -> dict:
        """Kind, config and metadata (what a checkpoint records)."""
        return {"kind": "ddpm", "config": self.config(), **self.meta}


def _starts(n: int, size: int, overlap: int) -> list[int]:
    """Tile offsets along one side: stride ``size - overlap``, the last tile flush with the end."""
    if size >= n:
        return [0]
    stride = max(1, size - overlap)
    starts = list(range(0, n - size, stride))
    return starts + [n - size]


def _ramp(size: int, overlap: int, at_start: bool = False, at_end: bool = False) -> torch.Tensor:
    """1-D tile weight: rises linearly over ``overlap`` px from each inner end, 1 elsewhere (never exactly 0);
    flat at an end that is the image's own border."""
    i = torch.arange(size, dtype=torch.float32)
    r = (torch.minimum(i + 1, size - i) / float(max(1, overlap) + 1)).clamp(max=1.0)
    if at_start:
        r[: size // 2] = 1.0
    if at_end:
        r[size // 2 :] = 1.0
    return r


def build_diffusion(channels: int, image_size: int | None, base: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                    num_res: int = 1, schedule: str = "linear", T: int = 1000, meta: dict | None = None,
                    attention: bool = True) -> Diffusion:
    """A fresh, untrained DDPM (``image_size`` None: a fully convolutional patch model, see :class:`Diffusion`)."""
    return Diffusion(UNet(channels, base, tuple(mults), num_res, attention=attention), NoiseSchedule(schedule, T),
                     image_size, meta)


def save_diffusion(model: Diffusion, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the U-Net weights, config and metadata (dataset, command, metrics) as a ``ddpm`` checkpoint."""
    return save_checkpoint(path, Checkpoint("ddpm", model.config(), {**model.meta, **(meta or {})},
                                            model.unet.state_dict()))


def load_diffusion(path: str | os.PathLike) -> Diffusion:
    """Load a ``ddpm`` checkpoint; CheckpointError with a one-line reason otherwise."""
    ckpt = read_checkpoint(path, kinds=("ddpm",))
    model = restore(ckpt, path, lambda cfg: Diffusion.from_config(cfg, ckpt.metadata), part=lambda m: m.unet)
    return model.eval()
