"""Train the learned noise-level estimator (:class:`lookalike.retrieval.denoise.sigma.SigmaNet`).

It learns from noisy images that were clipped to the valid range and quantised to 8 bits, which is what a real
noisy file looks like (clipping biases wavelet MAD low).
"""
from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lookalike.retrieval.denoise.noise import to_unit
from lookalike.retrieval.denoise.sigma import SigmaNet, save_sigma_net

__all__ = ["train_sigma_net"]


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


if __name__ == "__main__":  # python -m lookalike.training.ddpm.sigma_estimator OUT.pt
    import sys

    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else "retrieval/weights/ddpm-sigma-estimator.pt"
    net, meta = train_sigma_net()
    meta["command"] = f"python -m lookalike.training.ddpm.sigma_estimator {out}"
    save_sigma_net(net, out, meta)
    print(json.dumps(meta))
