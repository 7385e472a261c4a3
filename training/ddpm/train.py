"""Train a DDPM denoiser on MNIST / CIFAR-10 (shared samples offline, full torchvision sets online) or a folder."""
from __future__ import annotations

import copy
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lookalike.fsutil import atomic_write_text
from lookalike.retrieval.denoise.diffusion import Diffusion, build_diffusion, load_diffusion, save_diffusion
from lookalike.retrieval.denoise.noise import add_noise, psnr, to_unit

__all__ = ["TrainConfig", "train_ddpm", "load_training_images", "ddpm_loss"]


@dataclass
class TrainConfig:
    """Settings of one DDPM training run."""

    dataset: str = "mnist"
    out: str = "ddpm.pt"
    image_size: int | None = None        # None: the dataset's native size
    channels: int | None = None          # None: 1 for mnist, 3 otherwise
    source: str = "sample"               # sample | torchvision
    epochs: int = 20
    max_minutes: float | None = None     # stop early at this wall-time budget
    max_steps: int | None = None         # stop early after this many optimiser steps
    eval_images: int = 200               # test images for the final PSNR report
    batch_size: int = 64
    lr: float = 1e-3
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    schedule: str = "linear"
    T: int = 1000
    focus_sigma: float = 2.0             # most training steps drawn from t <= t*(focus_sigma)
    focus_frac: float = 0.8
    ema: float = 0.999
    grid_every: int = 5
    seed: int = 0
    threads: int | None = None
    init: str | None = None              # continue from this checkpoint (same channels / size)
    command: str = field(default_factory=lambda: "lookalike " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def _resize(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    out = []
    for a in arr:
        im = Image.fromarray(a)
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        out.append(np.asarray(im))
    return np.stack(out)


def load_training_images(dataset: str, split: str = "train", image_size: int | None = None,
                         channels: int | None = None, source: str = "sample") -> tuple[np.ndarray, int, int]:
    """uint8 images (N,H,W[,C]) of ``mnist``, ``cifar10`` or an image folder, plus (size, channels)."""
    from lookalike.data.samples import load_dataset

    if os.path.isdir(dataset):
        from lookalike.indexer.loading import IMAGE_EXTENSIONS, ImageLoadError, load_image

        files = sorted(p for p in Path(dataset).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{dataset}: no images found")
        size, ch = image_size or 32, channels or 3
        imgs = []
        for f in files:
            try:
                imgs.append(np.asarray(load_image(f)))
            except ImageLoadError:
                continue
        if not imgs:
            raise ValueError(f"{dataset}: no readable images")
        return np.stack([_resize(a[None], size, ch)[0] for a in imgs]), size, ch
    split_data = load_dataset(dataset, split, source=source)
    arr = split_data.images
    native_ch = 1 if arr.ndim == 3 else 3
    ch = channels or native_ch
    size = image_size or arr.shape[1]
    if size != arr.shape[1] or ch != native_ch:
        arr = _resize(arr, size, ch)
    return arr, size, ch


def ddpm_loss(model: Diffusion, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Simple eps-prediction MSE at steps t."""
    eps = torch.randn_like(x0)
    a = model.abar[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return F.mse_loss(model.unet(xt, t), eps)


def _grid(model: Diffusion, clean: torch.Tensor, path: Path, sigma: float = 0.5) -> None:
    from torchvision.utils import save_image

    g = torch.Generator().manual_seed(0)
    noisy = add_noise(clean, sigma, g)
    den = model.denoise(noisy, sigma, "ddim", 20)
    gen = model.sample(clean.shape[0], 25, g)
    save_image(torch.cat([noisy, den, clean, gen]) * 0.5 + 0.5, str(path), nrow=clean.shape[0], padding=1)


def _evaluate(model: Diffusion, test: torch.Tensor, sigma: float = 0.5) -> dict:
    g = torch.Generator().manual_seed(1)
    noisy = add_noise(test, sigma, g)
    t0 = time.perf_counter()
    den = torch.cat([model.denoise(noisy[i : i + 100], sigma, "ddim", 20) for i in range(0, len(noisy), 100)])
    ms = (time.perf_counter() - t0) * 1000 / len(noisy)
    return {"eval_sigma": sigma, "eval_images": int(len(test)), "psnr_noisy": round(float(psnr(noisy, test).mean()), 2),
            "psnr_ddim20": round(float(psnr(den, test).mean()), 2), "ddim20_ms_per_image_batched": round(ms, 1)}


def train_ddpm(cfg: TrainConfig, progress: bool = True) -> tuple[Diffusion, dict]:
    """Train, write the checkpoint (EMA weights) and sample grids; returns the model and its metadata."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    arr, size, ch = load_training_images(cfg.dataset, "train", cfg.image_size, cfg.channels, cfg.source)
    data = to_unit(arr)
    try:
        test_arr, _, _ = load_training_images(cfg.dataset, "test", size, ch, cfg.source)
        test = to_unit(test_arr[: cfg.eval_images])
    except Exception:
        test = data[: cfg.eval_images]
    if cfg.init:
        model = load_diffusion(cfg.init)
        if (model.channels, model.image_size) != (ch, size):
            raise ValueError(f"--init {cfg.init}: trained on {model.channels}x{model.image_size}px, data is {ch}x{size}px")
        prev = dict(model.meta)
        model.meta = {}
    else:
        model = build_diffusion(ch, size, cfg.base, tuple(cfg.mults), cfg.num_res, cfg.schedule, cfg.T)
        prev = {}
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    t_focus = max(1, model.schedule.t_of_sigma(cfg.focus_sigma))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = max(1, min(100, total // 10))
    start = time.time()
    step, losses, epoch_done = 0, [], 0
    bar = tqdm(total=total, desc=f"train ddpm {Path(cfg.dataset).name}", disable=not progress, unit="step")
    stop = False
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(data))
        model.train()
        for i in range(0, len(data), cfg.batch_size):
            x0 = data[perm[i : i + cfg.batch_size]]
            if ch == 3 and torch.rand(()) < 0.5:
                x0 = x0.flip(-1)
            n = x0.shape[0]
            focus = torch.rand(n) < cfg.focus_frac
            t = torch.where(focus, torch.randint(0, t_focus + 1, (n,)), torch.randint(0, cfg.T, (n,)))
            # warm-up then cosine decay over the run (by steps, or by wall time when a budget is set)
            frac = step / total
            if cfg.max_minutes:
                frac = max(frac, (time.time() - start) / (cfg.max_minutes * 60))
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            loss = ddpm_loss(model, x0, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
            opt.step()
            step += 1
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.unet.parameters(), model.unet.parameters()):
                    pe.lerp_(pm, 1 - decay)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", epoch=epoch + 1)
            if (cfg.max_minutes and time.time() - start > cfg.max_minutes * 60) or step >= total:
                stop = True
                break
        epoch_done = epoch + 1 if not stop else epoch + (i + cfg.batch_size) / len(data)
        if cfg.grid_every and ((epoch + 1) % cfg.grid_every == 0 or stop or epoch + 1 == cfg.epochs):
            _grid(ema, test[:10], out.with_name(f"{out.stem}-grid-epoch{epoch + 1}.png"))
        if stop:
            break
    bar.close()
    for be, bm in zip(ema.unet.buffers(), model.unet.buffers()):
        be.copy_(bm)
    wall = time.time() - start
    metrics = _evaluate(ema, test)
    meta = {"dataset": cfg.dataset if not os.path.isdir(cfg.dataset) else os.path.abspath(cfg.dataset),
            "source": cfg.source, "train_images": int(len(data)), "epochs": round(float(epoch_done), 2),
            "steps": step, "batch_size": cfg.batch_size, "lr": cfg.lr, "ema": cfg.ema,
            "t_sampling": f"{cfg.focus_frac:.0%} of steps uniform in [0, t*(sigma={cfg.focus_sigma})={t_focus}], rest uniform in [0, {cfg.T})",
            "final_loss": round(float(np.mean(losses[-100:])), 5), "wall_time_s": round(wall, 1),
            "command": cfg.command, "torch_threads": torch.get_num_threads(), "metrics": metrics}
    if prev:
        meta["continued_from"] = {k: prev.get(k) for k in ("command", "steps", "wall_time_s", "final_loss")}
        meta["total_steps"] = int(prev.get("total_steps", prev.get("steps", 0))) + step
        meta["total_wall_time_s"] = round(float(prev.get("total_wall_time_s", prev.get("wall_time_s", 0))) + wall, 1)
    ema.meta = meta
    save_diffusion(ema, out, meta)
    atomic_write_text(out.with_suffix(".json"), json.dumps(ema.describe(), indent=2))
    return ema, ema.describe()
