"""Noise-level estimators: wavelet median-absolute-deviation (classical) and a small learned CNN.

Both return sigma on the [-1, 1] pixel scale. The learned one is trained on noisy images that were clipped to
the valid range and quantised to 8 bits, which is what a real noisy file looks like (clipping biases MAD low).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .noise import to_unit

__all__ = ["SigmaNet", "wavelet_sigma", "train_sigma_net", "save_sigma_net", "load_sigma_net", "SIGMA_FORMAT"]

SIGMA_FORMAT = "lookalike-sigma-estimator"


def wavelet_sigma(arr: np.ndarray) -> float:
    """Wavelet-MAD (Donoho) noise estimate of a float image in [-1, 1], (H,W) or (H,W,C); [-1, 1] scale."""
    from skimage.restoration import estimate_sigma

    a = (np.asarray(arr, dtype=np.float64) + 1.0) / 2.0
    s = estimate_sigma(a, channel_axis=-1 if a.ndim == 3 else None, average_sigmas=True)
    return float(2.0 * s)


class SigmaNet(nn.Module):
    """Fully convolutional: per-pixel log-sigma and weight maps, pooled by a softmax-weighted mean (any image size)."""

    def __init__(self, width: int = 24, depth: int = 5) -> None:
        super().__init__()
        self.config = {"width": width, "depth": depth}
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


def _channels(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, *x.shape[-2:])


def train_sigma_net(steps: int = 1000, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                    sigma_range: tuple[float, float] = (0.02, 1.6), progress: bool = True) -> tuple[SigmaNet, dict]:
    """Train on MNIST + CIFAR-10 sample train images (each colour channel as a gray image)."""
    from lookalike.data.samples import load_sample

    torch.manual_seed(seed)
    mn = _channels(to_unit(load_sample("mnist", "train").images))
    cf = to_unit(load_sample("cifar10", "train").images)
    cf = torch.cat([_channels(cf), _channels(cf.mean(1, keepdim=True))])
    cf28 = cf[:, :, 2:30, 2:30]
    net = SigmaNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    lo, hi = math.log(sigma_range[0]), math.log(sigma_range[1])
    t0 = time.time()
    bar = tqdm(range(steps), desc="train sigma estimator", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        src = mn if step % 2 == 0 else (cf if step % 4 == 1 else cf28)
        x = src[torch.randint(0, len(src), (batch,))]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        ls = torch.empty(batch).uniform_(lo, hi)
        y = ((x + ls.exp().view(-1, 1, 1, 1) * torch.randn_like(x)).clamp(-1, 1) + 1).mul(127.5).round().div(127.5).sub(1)
        loss = F.smooth_l1_loss(net(y), ls, beta=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return net.eval(), {"steps": steps, "batch": batch, "wall_time_s": round(time.time() - t0, 1),
                        "sigma_range": list(sigma_range), "train_data": "mnist-5k train + cifar10-sample train channels"}


def save_sigma_net(net: SigmaNet, path: str | Path, meta: dict) -> None:
    """state_dict + JSON metadata."""
    info = {"config": net.config, **meta}
    torch.save({"format": SIGMA_FORMAT, "meta_json": json.dumps(info),
                "state_dict": {k: v.contiguous() for k, v in net.state_dict().items()}}, str(path))


def load_sigma_net(path: str | Path) -> SigmaNet:
    """Load a learned estimator; ValueError with the reason when the file is not one."""
    p = Path(path)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != SIGMA_FORMAT:
            raise ValueError("format tag missing")
        info = json.loads(obj["meta_json"])
        net = SigmaNet(**info["config"])
        net.load_state_dict(obj["state_dict"])
    except Exception as exc:
        raise ValueError(f"{p}: not a lookalike sigma-estimator checkpoint ({exc})") from exc
    net.meta = info  # type: ignore[attr-defined]
    return net.eval()


if __name__ == "__main__":  # python -m lookalike.training.ddpm.sigma_estimator OUT.pt
    import sys

    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else "models/ddpm-sigma-estimator.pt"
    net, meta = train_sigma_net()
    meta["command"] = f"python -m lookalike.training.ddpm.sigma_estimator {out}"
    save_sigma_net(net, out, meta)
    print(json.dumps(meta))
