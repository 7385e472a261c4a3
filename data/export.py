"""Write dataset images as PNG files, one sub-folder per class."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .samples import ArraySplit, load_dataset

__all__ = ["export_split", "export_dataset"]


def export_split(split: ArraySplit, out_dir: str | os.PathLike, prefix: str = "", limit: int | None = None,
                 progress: bool = True) -> list[Path]:
    """Save each image as OUT/<class>/<prefix><index>.png (atomic writes); returns the paths written."""
    out = Path(out_dir)
    n = len(split) if limit is None else min(limit, len(split))
    written: list[Path] = []
    for i in tqdm(range(n), desc=f"export -> {out}", unit="img", disable=not progress):
        cls = split.classes[int(split.labels[i])]
        folder = out / cls
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prefix}{i:05d}.png"
        tmp = path.with_name(path.name + ".tmp")
        Image.fromarray(np.asarray(split.images[i])).save(tmp, format="PNG")
        os.replace(tmp, path)
        written.append(path)
    return written


def export_dataset(name: str, out_dir: str | os.PathLike, split: str = "train", source: str = "sample",
                   limit: int | None = None, progress: bool = True) -> list[Path]:
    """Export ``mnist`` or ``cifar10`` (``sample`` or ``torchvision``) into class folders."""
    data = load_dataset(name, split=split, source=source)
    return export_split(data, out_dir, prefix=f"{split}-", limit=limit, progress=progress)
