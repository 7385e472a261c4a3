"""Train the photo denoiser ``ddpm-photo``: a small, attention-free U-Net DDPM on random 64x64 patches of the dev photos.

Data: :func:`lookalike.data.photosets.dev_photos` (Debian wallpapers, scikit-learn, matplotlib photos) at 1x, 1/2
and 1/4 scale, plus generated scenes; never scikit-image's photos (the eval set). 10% of patches are made grey
with the same noise in every channel, as a grey noisy photo has. The run stops at a CPU-time budget (one thread).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lookalike.retrieval.denoise.diffusion import Diffusion, build_diffusion, save_diffusion

__all__ = ["photo_patch_sources", "train_photo_ddpm"]


def photo_patch_sources(max_side: int = 1024, scales: tuple[int, ...] = (1, 2, 4), scenes: int = 20,
                        seed: int = 0) -> list[torch.Tensor]:
    """Allowed training images as (3,H,W) tensors in [-1, 1]: dev photos at each scale (box-reduced), generated scenes."""
    from lookalike.data.photosets import dev_photos, generated_scene

    ims = [im for _, im in dev_photos(max_side)]
    rng = np.random.default_rng(seed)
    ims += [generated_scene(rng, (int(rng.integers(200, 480)), int(rng.integers(160, 360)))) for _ in range(scenes)]
    out = []
    for im in ims:
        for f in scales:
            small = im if f == 1 else im.reduce(f)
            if min(small.size) >= 64:
                a = torch.from_numpy(np.asarray(small.convert("RGB"), dtype=np.float32).copy())
                out.append(a.permute(2, 0, 1) / 127.5 - 1.0)
    return out


def _batch(sources: list[torch.Tensor], n: int, patch: int, gray_frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    xs, gray = [], torch.rand(n) < gray_frac
    for i in range(n):
        src = sources[int(torch.randint(len(sources), ()))]
        _, h, w = src.shape
        top, left = int(torch.randint(h - patch + 1, ())), int(torch.randint(w - patch + 1, ()))
        x = src[:, top : top + patch, left : left + patch]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if gray[i]:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand(3, -1, -1)
        xs.append(x)
    return torch.stack(xs), gray


def train_photo_ddpm(out: str | Path, cpu_budget_s: float = 480.0, patch: int = 64, batch: int = 16, base: int = 16,
                     mults: tuple[int, ...] = (1, 2, 2), lr: float = 2e-3, max_sigma: float = 2.0, ema: float = 0.995,
                     gray_frac: float = 0.1, seed: int = 0, command: str = "") -> tuple[Diffusion, dict]:
    """Train until ``cpu_budget_s`` CPU-seconds of optimisation are spent; write the EMA weights as a ``ddpm``
    checkpoint with ``image_size`` None (any size) and return (model, metadata)."""
    torch.manual_seed(seed)
    cpu0, wall0 = time.process_time(), time.time()
    sources = photo_patch_sources(seed=seed)
    load_cpu = time.process_time() - cpu0
    model = build_diffusion(3, None, base, mults, 1, "linear", 1000, attention=False)
    ema_model = copy.deepcopy(model).eval()
    for p in ema_model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.unet.parameters(), lr=lr, weight_decay=0.0)
    t_max = model.schedule.t_of_sigma(max_sigma)
    cpu_start, step, losses = time.process_time(), 0, []
    while True:
        frac = (time.process_time() - cpu_start) / cpu_budget_s
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
        x0, gray = _batch(sources, batch, patch, gray_frac)
        t = torch.randint(0, t_max + 1, (batch,))
        eps = torch.randn_like(x0)
        eps = torch.where(gray.view(-1, 1, 1, 1), eps[:, :1].expand_as(eps), eps)  # grey photo: same noise per channel
        a = model.abar[t].view(-1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(model.unet(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
        opt.step()
        step += 1
        d = min(ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema_model.unet.parameters(), model.unet.parameters()):
                pe.lerp_(pm, 1 - d)
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} cpu {time.process_time() - cpu0:.0f}s "
                  f"wall {time.time() - wall0:.0f}s", flush=True)
    meta = {"dataset": "dev photos (lookalike.data.photosets.dev_photos, 1x/0.5x/0.25x) + 20 generated scenes",
            "train_images": len(sources), "patch": patch, "batch_size": batch, "steps": step, "lr": lr, "ema": ema,
            "t_sampling": f"uniform in [0, t*(sigma={max_sigma})={t_max}]", "gray_frac": gray_frac,
            "final_loss": round(float(np.mean(losses[-100:])), 5), "cpu_time_s": round(time.process_time() - cpu0, 1),
            "data_cpu_time_s": round(load_cpu, 1), "wall_time_s": round(time.time() - wall0, 1),
            "torch_threads": torch.get_num_threads(), "any_size": True, "command": command}
    ema_model.meta = meta
    save_diffusion(ema_model, out, meta)
    return ema_model, meta


if __name__ == "__main__":  # python -m lookalike.training.ddpm.photo --out retrieval/weights/ddpm-photo.pt
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="retrieval/weights/ddpm-photo.pt")
    ap.add_argument("--cpu-budget", type=float, default=480.0, help="CPU-seconds of optimisation (default 480)")
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cmd = (f"python -m lookalike.training.ddpm.photo --out {args.out} --cpu-budget {args.cpu_budget:g} "
           f"--base {args.base} --batch {args.batch} --seed {args.seed}")
    _, info = train_photo_ddpm(args.out, args.cpu_budget, base=args.base, batch=args.batch, seed=args.seed, command=cmd)
    print(json.dumps(info))
