"""Real dataset samples: the MNIST / CIFAR-10 .npz files shipped as package data (offline), torchvision's full sets on request."""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.settings import data_dir

__all__ = ["ArraySplit", "data_root", "load_sample", "load_torchvision", "load_dataset", "CLASS_NAMES", "DataError"]

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
_SAMPLE_FILES = {"mnist": "mnist-5k.npz", "cifar10": "cifar10-sample.npz"}


class DataError(LookalikeError, FileNotFoundError):
    """A dataset that cannot be found or read."""


@dataclass
class ArraySplit:
    """Images as uint8 arrays (N, H, W) or (N, H, W, 3) with integer labels."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def data_root() -> Path:
    """Folder holding the sample .npz files: $LOOKALIKE_DATA, else the copies shipped in this package."""
    configured = data_dir()
    if configured is not None:
        return configured
    return Path(str(resources.files(__package__).joinpath("sample-files")))  # wheels install unzipped


def _normalise_name(name: str) -> str:
    n = name.lower().replace("-sample", "").replace("-5k", "").replace("_", "").replace("-", "")
    if n not in _SAMPLE_FILES:
        raise DataError(f"unknown dataset '{name}' (choose mnist or cifar10)")
    return n


def load_sample(name: str, split: str = "train") -> ArraySplit:
    """Load the offline sample of ``mnist`` or ``cifar10`` (split ``train`` or ``test``)."""
    key = _normalise_name(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}' (choose train or test)")
    path = data_root() / _SAMPLE_FILES[key]
    if not path.is_file():
        raise DataError(f"{path}: sample file not found (set LOOKALIKE_DATA to the folder holding {_SAMPLE_FILES[key]})")
    with np.load(path) as z:
        images = np.asarray(z[f"{split}_images"], dtype=np.uint8)
        labels = np.asarray(z[f"{split}_labels"]).astype(np.int64)
    return ArraySplit(images=images, labels=labels, classes=CLASS_NAMES[key])


def load_torchvision(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = True) -> ArraySplit:
    """Load the full torchvision MNIST / CIFAR-10 (downloads once when online)."""
    from torchvision import datasets

    key = _normalise_name(name)
    root = Path(root or Path.home() / ".cache" / "lookalike" / "torchvision")
    cls = datasets.MNIST if key == "mnist" else datasets.CIFAR10
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except Exception as exc:
        raise DataError(f"{key}: torchvision download/load failed under {root} ({exc})") from exc
    images = np.asarray(ds.data.numpy() if hasattr(ds.data, "numpy") else ds.data, dtype=np.uint8)
    labels = np.asarray(ds.targets, dtype=np.int64)
    return ArraySplit(images=images, labels=labels, classes=CLASS_NAMES[key])


def load_dataset(name: str, split: str = "train", source: str = "sample") -> ArraySplit:
    """``source='sample'`` (the shipped offline files) or ``'torchvision'`` (full set)."""
    if source == "sample":
        return load_sample(name, split)
    if source == "torchvision":
        return load_torchvision(name, split)
    raise DataError(f"unknown source '{source}' (choose sample or torchvision)")
