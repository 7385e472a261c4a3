"""CLI: ``lookalike train ddpm``, ``lookalike denoise`` and ``lookalike bench denoise``."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lookalike.argtypes import fail, fraction, nonneg_int, positive_float, positive_int
from lookalike.argtypes import sigma as sigma_arg

__all__ = ["add_commands"]


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train_ddpm

    ds = args.dataset
    if not os.path.isdir(ds) and ds.lower().replace("-sample", "") not in ("mnist", "cifar10"):
        return fail(f"--dataset {ds}: not mnist, cifar10 or an existing folder")
    if args.init and not os.path.isfile(args.init):
        return fail(f"--init {args.init}: checkpoint not found")
    if args.image_size is not None and args.image_size not in (28, 32, 64):
        return fail(f"--image-size {args.image_size}: choose 28, 32 or 64")
    cfg = TrainConfig(dataset=ds, out=args.out, image_size=args.image_size, channels=args.channels, source=args.source,
                      epochs=args.epochs, max_minutes=args.max_minutes, batch_size=args.batch_size, lr=args.lr,
                      base=args.base, schedule=args.schedule, grid_every=args.grid_every, seed=args.seed,
                      threads=args.threads, focus_sigma=args.focus_sigma, focus_frac=args.focus_frac,
                      init=args.init)
    try:
        _, info = train_ddpm(cfg)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    print(json.dumps({"out": args.out, "wall_time_s": info["wall_time_s"], "steps": info["steps"], **info["metrics"]}))
    return 0


def _cmd_denoise(args: argparse.Namespace) -> int:
    from lookalike.indexer.loading import ImageLoadError, load_image
    from lookalike.retrieval.denoise import DenoiseError, denoise_image

    try:
        im = load_image(args.image)
    except ImageLoadError as exc:
        return fail(f"{args.image}: {exc.reason}")
    try:
        res = denoise_image(im, method=args.method, sigma=args.sigma, model=args.model, n_samples=args.samples,
                            steps=args.steps, seed=args.seed)
    except DenoiseError as exc:
        return fail(str(exc))
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        res.image.save(out)
    except (OSError, ValueError) as exc:
        return fail(f"{args.out}: cannot write ({exc})")
    info = {"out": str(out), "method": res.method, "sigma": round(res.sigma, 4), "sigma_estimated": res.sigma_estimated,
            "model": res.model, "fallback_reason": res.fallback_reason, "samples": len(res.samples), "ms": round(res.ms, 1)}
    print(json.dumps(info) if args.json else "  ".join(f"{k}={v}" for k, v in info.items()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench import run_single

    if args.threads:
        torch.set_num_threads(args.threads)
    return run_single(args)


def add_commands(subparsers, train_subparsers, bench_subparsers) -> None:
    """Register ``train ddpm``, ``denoise`` and ``bench denoise``."""
    t = train_subparsers.add_parser("ddpm", help="train a DDPM denoiser for noisy queries")
    t.add_argument("--dataset", default="mnist", help="mnist | cifar10 | an image folder")
    t.add_argument("--image-size", type=positive_int, default=None, help="28 | 32 | 64 (default: native size)")
    t.add_argument("--channels", type=positive_int, choices=(1, 3), default=None, help="1 (gray) or 3 (colour); default from data")
    t.add_argument("--source", choices=("sample", "torchvision"), default="sample", help="offline sample or full set")
    t.add_argument("--out", default="ddpm.pt", help="checkpoint path")
    t.add_argument("--epochs", type=positive_int, default=20)
    t.add_argument("--max-minutes", type=positive_float, default=None, help="wall-time budget (LR decays to it)")
    t.add_argument("--batch-size", type=positive_int, default=64)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--base", type=positive_int, default=32, help="U-Net base channels")
    t.add_argument("--schedule", choices=("linear", "cosine"), default="linear")
    t.add_argument("--focus-sigma", type=positive_float, default=2.0, help="draw most t from [0, t*(this sigma)]")
    t.add_argument("--focus-frac", type=fraction, default=0.8, help="share of steps drawn in the focus range")
    t.add_argument("--grid-every", type=nonneg_int, default=5, help="sample grid PNG every N epochs (0: never)")
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--threads", type=nonneg_int, default=None)
    t.add_argument("--init", default=None, help="continue training from this DDPM checkpoint")
    t.set_defaults(func=_cmd_train)

    def denoise_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sigma", type=sigma_arg, default="auto", help="noise level on the [-1,1] scale, or auto")
        p.add_argument("--method", choices=("auto", "ddpm", "ddim", "classical"), default="auto")
        p.add_argument("--model", default=None, help="ddpm-mnist | ddpm-cifar10 | ddpm-photo | checkpoint path")
        p.add_argument("--steps", type=positive_int, default=None,
                       help="reverse steps from t* (DDIM / respaced DDPM); default: the model's own (20, ddpm-photo 2)")
        p.add_argument("--seed", type=nonneg_int, default=0)

    d = subparsers.add_parser("denoise", help="remove noise from an image (DDPM / DDIM / classical)")
    d.add_argument("image")
    d.add_argument("--out", required=True, help="where to write the cleaned PNG")
    denoise_args(d)
    d.add_argument("--samples", type=positive_int, default=1, help="draw several samples (first one is written)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_denoise)

    b = bench_subparsers.add_parser("denoise", help="noisy-query retrieval with and without denoising, one setting")
    b.add_argument("--dataset", default="mnist-sample", help="mnist-sample | cifar10-sample")
    b.add_argument("--sigma", type=positive_float, default=0.5)
    b.add_argument("--method", choices=("ddpm", "ddim", "classical"), default="ddim")
    b.add_argument("--embedder", default=None, help="embedder name (default: best available for the dataset)")
    b.add_argument("--queries", type=positive_int, default=300)
    b.add_argument("--steps", type=positive_int, default=20)
    b.add_argument("--seed", type=nonneg_int, default=0)
    b.add_argument("--threads", type=nonneg_int, default=1, help="torch threads (0: torch default)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench)
