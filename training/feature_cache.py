"""Backbone features computed once: clean images and V augmented views per image, cached on disk.

The backbones are frozen, so a projection head can be trained on these arrays in seconds to minutes.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lookalike.fsutil import atomic_path
from lookalike.settings import cache_root
from lookalike.retrieval.nets import FrozenBackbones

from .augment import EditAugment, simclr_augment
from .datasets import ImageSet

__all__ = ["cache_dir", "clean_features", "view_features"]

_BACKBONES: dict[tuple, FrozenBackbones] = {}


def cache_dir() -> Path:
    """``features/`` under the cache root (:func:`lookalike.settings.cache_root`, which compiled models share)."""
    return cache_root() / "features"


def _backbones(names: list[str], input_size: int | None) -> FrozenBackbones:
    key = (tuple(names), input_size)
    if key not in _BACKBONES:
        _BACKBONES[key] = FrozenBackbones(names, input_size).eval()
    return _BACKBONES[key]


def _save(path: Path, arr: np.ndarray) -> None:
    """Cache ``arr`` atomically: a run killed mid-write never leaves a truncated file to be loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)


def _key(*parts) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


@torch.inference_mode()
def _run(backbone: FrozenBackbones, tensors: list[torch.Tensor], batch_size: int, desc: str | None) -> np.ndarray:
    out = []
    it = range(0, len(tensors), batch_size)
    for s in tqdm(it, desc=desc, unit="batch", disable=desc is None, leave=False):
        x = torch.stack(tensors[s : s + batch_size]).contiguous(memory_format=torch.channels_last)
        out.append(backbone(x).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)


def clean_features(backbones: list[str], input_size: int | None, data: ImageSet, batch_size: int = 64,
                   use_cache: bool = True, progress: bool = True) -> np.ndarray:
    """(N, D) features of the unaugmented images: what the embedder computes at index time."""
    if len(backbones) > 1:  # cached per backbone, concatenated like FrozenBackbones does
        return np.concatenate([clean_features([b], input_size, data, batch_size, use_cache, progress)
                               for b in backbones], axis=1)
    path = cache_dir() / f"clean-{_key(backbones, input_size, data.fingerprint, len(data))}.npy"
    if use_cache and data.fingerprint and path.is_file():
        return np.load(path)
    bb = _backbones(backbones, input_size)
    tf = bb.preprocess.build_transform()
    feats = _run(bb, [tf(im) for im in data.images], batch_size, f"{backbones[0]} {data.name}" if progress else None)
    if use_cache and data.fingerprint:
        _save(path, feats)
    return feats


def view_features(backbones: list[str], input_size: int | None, data: ImageSet, views: int, seed: int = 0,
                  small: bool | None = None, batch_size: int = 64, use_cache: bool = True,
                  progress: bool = True, augment: str = "simclr") -> np.ndarray:
    """(N, V, D) features of ``views`` augmented views per image (seeded, reproducible).

    ``augment``: ``simclr`` (crop/flip/colour/blur) or ``edits`` (photo edits, noise, JPEG: copy detection).

    Several backbones see the very same augmented views (same seed), so each is cached on its own.
    """
    if len(backbones) > 1:
        return np.concatenate([view_features([b], input_size, data, views, seed, small, batch_size, use_cache,
                                             progress, augment) for b in backbones], axis=2)
    bb = _backbones(backbones, input_size)
    size = bb.preprocess.input_size
    if small is None:
        small = max(data.images[0].size) <= 64
    tag = () if augment == "simclr" else (augment,)  # simclr keeps the keys of caches made before ``augment``
    path = cache_dir() / f"views-{_key(backbones, input_size, data.fingerprint, len(data), views, seed, small, *tag)}.npy"
    if use_cache and data.fingerprint and path.is_file():
        return np.load(path)
    if use_cache and data.fingerprint:  # the first V views of a longer cached run are the same views
        for more in range(views + 1, 65):
            longer = cache_dir() / f"views-{_key(backbones, input_size, data.fingerprint, len(data), more, seed, small, *tag)}.npy"
            if longer.is_file():
                return np.ascontiguousarray(np.load(longer, mmap_mode="r")[:, :views])
    # augment at the image's own scale for small images (crop/jitter/dropout act on the 32 px picture)
    aug_size = max(data.images[0].size) if small else size
    if augment not in ("simclr", "edits"):
        raise ValueError(f"unknown augmentation '{augment}' (choose simclr or edits)")
    aug = simclr_augment(aug_size, small=small) if augment == "simclr" else EditAugment(seed)
    tf = bb.preprocess.build_transform()
    random.seed(seed)
    torch.manual_seed(seed)
    out = np.zeros((len(data), views, bb.dim), np.float32)
    chunk = 256
    bar = tqdm(total=len(data) * views, desc=f"{backbones[0]} views {data.name} x{views}", unit="img", disable=not progress)
    for v in range(views):
        for s in range(0, len(data), chunk):
            tensors = [tf(aug(im)) for im in data.images[s : s + chunk]]
            out[s : s + len(tensors), v] = _run(bb, tensors, batch_size, None)
            bar.update(len(tensors))
    bar.close()
    if use_cache and data.fingerprint:
        _save(path, out)
    return out
