"""Training data: the shared samples, torchvision's full sets, image folders; P x K batches and random pairs."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from lookalike.data.samples import CLASS_NAMES, DataError, load_sample, load_torchvision

__all__ = ["ImageSet", "load_images", "dataset_display_name", "PKBatchSampler", "PairBatchSampler", "draw_pairs",
           "DataError"]

_BUILTIN = {"mnist", "cifar10"}
MAX_FOLDER_SIDE = 256  # folder images are kept as thumbnails of at most this side


@dataclass
class ImageSet:
    """RGB PIL images with integer labels (None when unlabelled) and a display name such as ``MNIST-sample``."""

    images: list[Image.Image]
    labels: np.ndarray | None
    classes: list[str]
    name: str
    fingerprint: str = field(default="")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def _builtin_key(spec: str) -> str | None:
    key = spec.lower().replace("_", "").replace("-", "")
    for suffix in ("sample", "5k"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key if key in _BUILTIN else None


def dataset_display_name(spec: str, source: str = "sample") -> str:
    """``MNIST-sample``, ``CIFAR-10`` (full set) or the folder name: figures are named by their data."""
    key = _builtin_key(spec)
    if key is None:
        return Path(spec).name or spec
    base = {"mnist": "MNIST", "cifar10": "CIFAR-10"}[key]
    return f"{base}-sample" if source == "sample" else base


def _arrays_to_pil(images: np.ndarray) -> list[Image.Image]:
    if images.ndim == 3:
        return [Image.fromarray(im, mode="L").convert("RGB") for im in images]
    return [Image.fromarray(im, mode="RGB") for im in images]


def _fingerprint(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else str(p).encode())
    return h.hexdigest()[:16]


def load_images(spec: str, split: str = "train", source: str | None = None, seed: int = 0,
                test_share: float = 0.2) -> ImageSet:
    """Load ``mnist``/``cifar10`` (``-sample`` suffix or ``source='sample'``: the shared files; else torchvision)
    or an image folder.

    A folder is labelled by its first-level sub-folders; with ``train/`` and ``test/`` sub-folders those are the
    splits, otherwise a fixed, seeded ``test_share`` of each class is the test split.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}' (choose train or test)")
    key = _builtin_key(spec)
    if key is not None and not os.path.isdir(spec):
        if source is None:
            source = "sample" if "sample" in spec.lower() or "5k" in spec.lower() else "torchvision"
        if source == "sample":
            arr = load_sample(key, split)
        elif source == "torchvision":
            arr = load_torchvision(key, split)
        else:
            raise DataError(f"unknown source '{source}' (choose sample or torchvision)")
        return ImageSet(_arrays_to_pil(arr.images), arr.labels, list(CLASS_NAMES[key]),
                        dataset_display_name(key, source), _fingerprint(key, source, split, arr.labels, len(arr)))
    return _load_folder(spec, split, seed, test_share)


def _list_images(folder: Path) -> list[Path]:
    from lookalike.indexer.loading import supported_extensions

    exts = supported_extensions()
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and not p.name.startswith("."))


def _load_folder(spec: str, split: str, seed: int, test_share: float) -> ImageSet:
    from lookalike.indexer.loading import ImageLoadError, load_image

    root = Path(spec).expanduser()
    if not root.is_dir():
        raise DataError(f"{spec}: not a folder and not a known dataset (mnist, cifar10, mnist-sample, cifar10-sample)")
    explicit = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if explicit else root
    files = _list_images(base)
    if not files:
        raise DataError(f"{base}: no image files found")
    rel = [f.relative_to(base) for f in files]
    labelled = all(len(r.parts) >= 2 for r in rel)
    classes = sorted({r.parts[0] for r in rel}) if labelled else []
    if explicit:
        # class names come from train/ so train and test share label ids
        tr = [f.relative_to(root / "train") for f in _list_images(root / "train")]
        if labelled and all(len(r.parts) >= 2 for r in tr):
            classes = sorted({r.parts[0] for r in tr} | set(classes))
    labels = np.array([classes.index(r.parts[0]) for r in rel], dtype=np.int64) if labelled else None
    if not explicit:
        rng = np.random.default_rng(seed)
        groups = labels if labels is not None else np.zeros(len(files), dtype=np.int64)
        is_test = np.zeros(len(files), dtype=bool)
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            rng.shuffle(idx)
            n_test = int(round(len(idx) * test_share)) if len(idx) > 1 else 0
            is_test[idx[:n_test]] = True
        keep = is_test if split == "test" else ~is_test
        files = [f for f, k in zip(files, keep) if k]
        labels = labels[keep] if labels is not None else None
    images = []
    kept_labels = []
    for i, f in enumerate(files):
        try:
            im = load_image(f)
        except ImageLoadError:
            continue
        im.thumbnail((MAX_FOLDER_SIDE, MAX_FOLDER_SIDE))
        images.append(im)
        if labels is not None:
            kept_labels.append(labels[i])
    if not images:
        raise DataError(f"{base}: no readable images for the {split} split")
    lab = np.array(kept_labels, dtype=np.int64) if labels is not None else None
    return ImageSet(images, lab, classes, root.name, _fingerprint(str(root.resolve()), split, [str(f) for f in files]))


class PKBatchSampler:
    """Batches of P classes x K images each (classes with fewer than K images are sampled with replacement)."""

    def __init__(self, labels: np.ndarray, p: int, k: int, n_batches: int | None = None, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.by_class = {c: idx for c, idx in self.by_class.items() if len(idx) >= 2}
        if len(self.by_class) < 2:
            raise DataError("P x K batches need at least two classes with two images each")
        self.p = min(int(p), len(self.by_class))
        self.k = int(k)
        self.n_batches = n_batches or max(1, len(self.labels) // (self.p * self.k))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        classes = np.array(sorted(self.by_class))
        for _ in range(self.n_batches):
            chosen = self.rng.choice(classes, size=self.p, replace=False)
            batch = []
            for c in chosen:
                idx = self.by_class[int(c)]
                batch.append(self.rng.choice(idx, size=self.k, replace=len(idx) < self.k))
            yield np.concatenate(batch)


def draw_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs (i, j, same): half same-class, half different-class (re-drawn every call)."""
    labels = np.asarray(labels)
    by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    multi = [c for c, idx in by_class.items() if len(idx) >= 2]
    if len(by_class) < 2 or not multi:
        raise DataError("pairs need at least two classes and one class with two images")
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    i_s = np.empty(n_same, dtype=np.int64)
    j_s = np.empty(n_same, dtype=np.int64)
    cls = rng.choice(multi, size=n_same)
    for t, c in enumerate(cls):
        i_s[t], j_s[t] = rng.choice(by_class[int(c)], size=2, replace=False)
    i_d = rng.integers(0, len(labels), size=n_diff)
    j_d = rng.integers(0, len(labels), size=n_diff)
    bad = labels[i_d] == labels[j_d]
    while bad.any():
        j_d[bad] = rng.integers(0, len(labels), size=int(bad.sum()))
        bad = labels[i_d] == labels[j_d]
    i = np.concatenate([i_s, i_d])
    j = np.concatenate([j_s, j_d])
    same = np.concatenate([np.ones(n_same, bool), np.zeros(n_diff, bool)])
    perm = rng.permutation(n_pairs)
    return i[perm], j[perm], same[perm]


class PairBatchSampler:
    """Batches ``[i, j]`` of ``batch_size`` random pairs each (``draw_pairs``, re-drawn on every pass).

    Row ``k`` and row ``batch_size + k`` of a batch are a pair (``HalvesPairMiner`` reads them back).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.batch_size = int(batch_size)
        self.n_batches = max(1, len(self.labels) // self.batch_size)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        i, j, _ = draw_pairs(self.labels, self.n_batches * self.batch_size, self.rng)
        for s in range(0, len(i), self.batch_size):
            yield np.concatenate([i[s : s + self.batch_size], j[s : s + self.batch_size]])
