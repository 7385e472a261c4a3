"""Shared fixtures: real photos from scikit-image, small real indexes. Shared helpers live in helpers.py."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import PHOTOS, save_rgb
from lookalike.data.photos import load_photo


@pytest.fixture(scope="session", autouse=True)
def model_cache():
    """Compiled models (retrieval/runtime.py) go to the repo's .pytest_cache, not the user's cache folder."""
    if os.environ.get("LOOKALIKE_CACHE"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "lookalike-models"))
        yield


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Real photos as PNG, one per scikit-image sample."""
    d = tmp_path_factory.mktemp("photos")
    for n in PHOTOS:
        save_rgb(load_photo(n), d / f"{n}.png")
    return d


@pytest.fixture
def photos(photo_dir, tmp_path) -> Path:
    """A private, writable copy of the photo folder."""
    return Path(shutil.copytree(photo_dir, tmp_path / "photos"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: on a shared 2-core machine, oversubscribed OpenMP threads are ~10x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
