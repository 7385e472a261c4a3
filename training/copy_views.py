"""Views of the copy-head training images under the 59 development edit kinds, their frozen lite0 features, and the
head fitted on them (``lookalike train copy-head --augment augly``; docs/benchmarks.md 12.3).

The kinds are split into groups over the view slots, so leaving a group's slots out trains a head that never saw
those kinds (``benchmarks/copy_head_study.py``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time

import numpy as np
from PIL import Image

from .copy_head import copy_training_items

__all__ = ["edit_kinds", "apply_kind", "lite0_input", "lite0_runner", "run_inputs", "edited_view_features",
           "fit_copy_head", "train_augly_head"]


def edit_kinds() -> list[str]:
    """The 59 development edit kinds: AugLy's 35 (``data/augly_edits.py``) and ``edit-NAME-STRENGTH`` for
    lookalike's 12 edits (``data/edits.py``) at both strengths."""
    from lookalike.data.augly_edits import AUGLY_KINDS
    from lookalike.data.edits import EDITS

    return list(AUGLY_KINDS) + [f"edit-{n}-{s}" for n in EDITS for s in ("mild", "strong")]


def apply_kind(im: Image.Image, kind: str, seed: int) -> Image.Image:
    """``im`` edited by one development edit kind (see :func:`edit_kinds`)."""
    from lookalike.data.augly_edits import augly_edit
    from lookalike.data.edits import apply_edit

    if kind.startswith("edit-"):
        _, name, strength = kind.split("-", 2)
        return apply_edit(im, name, strength, seed=seed)
    return augly_edit(im, kind, seed=seed)


_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
_WORKER: dict = {}


def lite0_input(im: Image.Image) -> np.ndarray:
    """efficientnet_lite0's input as its timm transform makes it (bicubic squash to 224 px, ImageNet mean/std),
    in numpy: torch can hang in a forked worker."""
    a = np.asarray(im.convert("RGB").resize((224, 224), Image.BICUBIC), np.float32).transpose(2, 0, 1) / 255.0
    return ((a - _MEAN) / _STD).astype(np.float16)


def _worker_init(images: list[Image.Image]) -> None:
    _WORKER["images"] = images


def _edited_input(task: tuple[int, str, int]) -> np.ndarray:
    i, kind, seed = task
    im = _WORKER["images"][i]
    return lite0_input(im if kind == "clean" else apply_kind(im, kind, seed).convert("RGB"))


def lite0_runner():
    """Frozen efficientnet_lite0 on OpenVINO (bf16 where the CPU has it): (N, 3, 224, 224) -> (N, 1280) unit-norm
    features, as ``FrozenBackbones`` computes them."""
    import openvino as ov
    import torch

    from lookalike.retrieval.nets import FrozenBackbones
    from lookalike.retrieval.runtime import bf16_available

    bb = FrozenBackbones(["efficientnet_lite0"]).eval()
    model = ov.convert_model(bb, example_input=torch.zeros(1, 3, 224, 224))
    hint = "bf16" if bf16_available() else "f32"
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"})
    return lambda x: np.asarray(compiled(np.ascontiguousarray(x, np.float32))[0], np.float32)


def run_inputs(tasks: list, make_input, images: list, run, desc: str | None, batch: int = 32,
               workers: int = 2) -> np.ndarray:
    """``run`` over the inputs ``make_input(task)`` builds in ``workers`` forked processes (progress on stderr)."""
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=(images,)) as pool:
        buf: list[np.ndarray] = []
        for n, arr in enumerate(pool.imap(make_input, tasks, chunksize=8), 1):
            buf.append(arr)
            if len(buf) == batch:
                out.append(run(np.stack(buf)))
                buf = []
            if desc and n % 500 == 0:
                print(f"{desc}: {n}/{len(tasks)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if buf:
            out.append(run(np.stack(buf)))
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def edited_view_features(views: int = 12, groups: int = 6, seed: int = 0, progress: bool = True) -> dict:
    """Cached lite0 features of the copy-head training images, clean and ``views`` edited views each.

    View slot ``v`` draws its kind from group ``v // (views // groups)`` of a seeded split of :func:`edit_kinds`,
    so leaving the slots of one group out trains without any kind of that group. Returns ``clean`` (N, D),
    ``views`` (N, V, D), ``view_kind`` (N, V, indexes into ``kinds``), ``group_of`` (per kind), ``kinds``.
    """
    from lookalike.fsutil import atomic_path

    from .feature_cache import cache_dir

    if views % groups:
        raise ValueError(f"views ({views}) must be a multiple of groups ({groups})")
    images, names, _ = copy_training_items()
    kinds = edit_kinds()
    key = hashlib.sha1(json.dumps([names, [im.size for im in images], kinds, views, groups, seed]).encode()).hexdigest()
    path = cache_dir() / f"copy-views-{key[:20]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    group_of = rng.permutation(len(kinds)) % groups
    per = views // groups
    view_kind = np.zeros((len(images), views), np.int32)
    tasks: list[tuple[int, str, int]] = [(i, "clean", 0) for i in range(len(images))]
    for i in range(len(images)):
        for v in range(views):
            view_kind[i, v] = int(rng.choice(np.flatnonzero(group_of == v // per)))
            tasks.append((i, kinds[view_kind[i, v]], int(rng.integers(1 << 30))))
    feats = run_inputs(tasks, _edited_input, images, lite0_runner(), "copy-head views" if progress else None)
    out = {"clean": feats[: len(images)], "views": feats[len(images):].reshape(len(images), views, -1),
           "view_kind": view_kind, "group_of": group_of, "kinds": np.array(kinds)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **out)
    return out


def fit_copy_head(clean: np.ndarray, views: np.ndarray, epochs: int = 60, koleo: float = 0.0, seed: int = 0,
                  clean_p: float = 0.5, temperature: float = 0.1, hidden: int = 1024, out_dim: int = 256,
                  lr: float = 1e-3, batch_size: int = 256, desc: str | None = None):
    """A ``ProjectionHead`` fitted with NT-Xent (+ KoLeo) on cached features: the first view of a pair is the
    clean image with probability ``clean_p``, as search compares edited queries with clean originals."""
    import torch

    from lookalike.retrieval.nets import ProjectionHead

    from .trainer import fit_head_on_views

    torch.manual_seed(seed)
    head = ProjectionHead(clean.shape[1], hidden, out_dim)
    fit_head_on_views(head, torch.from_numpy(np.ascontiguousarray(views)), torch.arange(len(views)), temperature,
                      epochs, batch_size, lr, 1e-4, seed, clean=torch.from_numpy(clean), clean_p=clean_p,
                      koleo=koleo, desc=desc)
    return head


def train_augly_head(args: argparse.Namespace) -> int:
    """``lookalike train copy-head --augment augly``: features, head, checkpoint; prints a JSON summary."""
    import torch

    from lookalike.retrieval.nets import HeadEmbedder, save_embedder

    t0 = time.perf_counter()
    feats = edited_view_features(args.views, args.groups, args.seed, progress=not args.quiet)
    t_cache = time.perf_counter() - t0
    head = fit_copy_head(feats["clean"], feats["views"], args.epochs, args.koleo, args.seed, args.clean_p,
                         args.temperature, args.hidden, args.out_dim, args.lr, args.batch_size,
                         desc=None if args.quiet else "nt-xent head")
    model = HeadEmbedder(["efficientnet_lite0"], None, args.hidden, args.out_dim, output=args.output,
                         name=args.name)
    with torch.no_grad():
        model.head.load_state_dict(head.state_dict())
    model.eval()
    wall = time.perf_counter() - t0
    cmd = "lookalike " + " ".join(sys.argv[1:])
    save_embedder(args.out, model, {"kind": args.name, "dataset": f"copy-train ({len(feats['clean'])} images: dev "
                                    "photo tiles, generated scenes, CIFAR-10-sample train, Debian graphics; no "
                                    "scikit-image photo), views of the 59 development edit kinds",
                                    "command": cmd, "config": {k: v for k, v in vars(args).items() if k != "func"},
                                    "train_wall_s": round(wall, 1), "cache_s": round(t_cache, 1)})
    print(json.dumps({"out": args.out, "images": len(feats["clean"]), "views": int(feats["views"].shape[1]),
                      "dim": model.dim, "wall_s": round(wall, 1), "cache_s": round(t_cache, 1)}))
    return 0
