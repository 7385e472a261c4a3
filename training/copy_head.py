"""Edit-robust projection head for copy detection: NT-Xent on cached backbone features of photo-edited views.

Trained on images that are never the evaluation photos: tiles of the dev photos (Debian wallpapers, scikit-learn,
matplotlib), generated scenes, the CIFAR-10 sample (train split, upscaled) and Debian desktop graphics.
``lookalike train copy-head`` runs it; ``--augment edits`` (``ntxent-copies``) draws lookalike's own edits,
``--augment augly`` draws the 59 development edit kinds (35 AugLy kinds and lookalike's 12 edits at two
strengths), stratified over the view slots so that a study can hold groups of kinds out
(``benchmarks/copy_head_study.py``), with the KoLeo regulariser (``--koleo``): :mod:`.copy_views`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy, PIL and the photo sets load when a set is built, not with the CLI's parser
    from PIL import Image

    from .datasets import ImageSet

__all__ = ["copy_training_set", "copy_training_items", "add_commands"]


def _tiles(im: Image.Image, grid: int = 3) -> list[Image.Image]:
    w, h = im.size
    return [im.crop((i * w // grid, j * h // grid, (i + 1) * w // grid, (j + 1) * h // grid))
            for j in range(grid) for i in range(grid)]


def copy_training_items(n_scenes: int = 150, cifar: int = 300, seed: int = 1,
                        max_side: int = 768) -> tuple[list[Image.Image], list[str], list[str]]:
    """(images, names, owners) of the copy-head training set; ``owners`` names the dev photo an image is a tile
    of ("" for the others), so that a study can leave some dev photos out."""
    import numpy as np
    from PIL import Image

    from lookalike.data.photosets import dev_photos, distractors, generated_scene
    from lookalike.data.samples import load_sample

    images: list[Image.Image] = []
    names: list[str] = []
    owners: list[str] = []
    for name, im in dev_photos(max_side):
        images += _tiles(im)  # disjoint tiles: no two training images share content
        names += [f"{name}-{t}" for t in range(9)]
        owners += [name] * 9
    graphics = [(n, im) for n, im in distractors(13, max_side=max_side) if n.startswith("debian-")]
    images += [im for _, im in graphics]
    names += [n for n, _ in graphics]
    rng = np.random.default_rng(seed)
    for i in range(n_scenes):
        images.append(generated_scene(rng, (int(rng.integers(200, 480)), int(rng.integers(160, 360)))))
        names.append(f"scene-{seed}-{i}")
    arr = load_sample("cifar10", "train").images[:cifar]
    images += [Image.fromarray(a).resize((128, 128), Image.BICUBIC) for a in arr]
    names += [f"cifar10-train-{i}" for i in range(len(arr))]
    owners += [""] * (len(images) - len(owners))
    return images, names, owners


def copy_training_set(n_scenes: int = 150, cifar: int = 300, seed: int = 1, max_side: int = 768) -> ImageSet:
    """Unlabelled training images (no scikit-image photo): 3x3 tiles of the dev photos, generated scenes,
    upscaled CIFAR-10-sample train images and Debian desktop graphics."""
    from .datasets import ImageSet

    images, names, _ = copy_training_items(n_scenes, cifar, seed, max_side)
    fp = hashlib.sha1(json.dumps([names, [im.size for im in images], max_side, seed]).encode()).hexdigest()[:16]
    return ImageSet(images, None, [], "copy-train", fingerprint=f"copy-train-{fp}")


def _cmd(args: argparse.Namespace) -> int:
    import torch

    from lookalike.retrieval.nets import save_embedder

    from .trainer import HeadConfig, train_head

    if args.augment == "augly":
        from .copy_views import train_augly_head

        if args.threads:
            torch.set_num_threads(args.threads)
        return train_augly_head(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = copy_training_set(n_scenes=args.scenes, cifar=args.cifar)
    cfg = HeadConfig(backbones=[args.backbone], views=args.views, temperature=args.temperature, epochs=args.epochs,
                     batch_size=args.batch_size, hidden=args.hidden, out_dim=args.out_dim, lr=args.lr,
                     output=args.output, augment="edits", seed=args.seed)
    model, result = train_head(cfg, data, None, progress=not args.quiet)
    model.name = args.name
    wall = time.perf_counter() - t0
    cmd = "lookalike " + " ".join(sys.argv[1:])
    save_embedder(args.out, model, {"kind": args.name, "dataset": f"{data.name} ({len(data)} images: dev "
                                      "photo tiles, generated scenes, CIFAR-10-sample train, Debian graphics; no "
                                      "scikit-image photo)", "command": cmd, "config": {**cfg.__dict__},
                                      "train_wall_s": round(wall, 1), "cache_s": result.extra.get("cache_s"),
                                      "final_loss": round(result.history[-1], 4) if result.history else None})
    print(json.dumps({"out": args.out, "images": len(data), "output": model.output, "dim": model.dim,
                      "wall_s": round(wall, 1), "cache_s": result.extra.get("cache_s"),
                      "loss_first_last": [round(result.history[0], 4), round(result.history[-1], 4)]}))
    return 0


def add_commands(subparsers, train_subparsers, bench_subparsers) -> None:
    """Register ``train copy-head``."""
    p = train_subparsers.add_parser("copy-head", help="train the edit-robust NT-Xent head for finding originals of copies")
    p.add_argument("--out", default="ntxent-copies-lite0.pt")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--augment", choices=("edits", "augly"), default="edits",
                   help="views from lookalike's edits (ntxent-copies) or the 59 AugLy + lookalike kinds (ntxent-augly)")
    p.add_argument("--name", default="ntxent-copies", help="the model name stored in the checkpoint")
    p.add_argument("--views", type=int, default=8, help="edited views cached per training image")
    p.add_argument("--groups", type=int, default=6, help="--augment augly: groups of kinds over the view slots")
    p.add_argument("--koleo", type=float, default=0.0, help="--augment augly: weight of the KoLeo regulariser")
    p.add_argument("--clean-p", type=float, default=0.5,
                   help="--augment augly: share of pairs whose first view is the clean image")
    p.add_argument("--scenes", type=int, default=150, help="generated scenes among the training images")
    p.add_argument("--cifar", type=int, default=300, help="CIFAR-10-sample train images among the training images")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--out-dim", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--output", choices=("hidden", "projection"), default="hidden")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd)
