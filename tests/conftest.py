"""Shared fixtures: real photos from scikit-image, the shared dataset samples, small real indexes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from lookalike.data.photos import load_photo
from lookalike.data.samples import data_root

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry",
          "moon", "clock"]


def have_samples() -> bool:
    r = data_root()
    return (r / "mnist-5k.npz").is_file() and (r / "cifar10-sample.npz").is_file()


needs_samples = pytest.mark.skipif(not have_samples(), reason=f"shared dataset samples not found under {data_root()} (set LOOKALIKE_DATA)")


def save_rgb(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg") and im.mode != "RGB":
        im = im.convert("RGB")
    im.save(path, **kw)
    return path


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Real photos as PNG, one per scikit-image sample."""
    d = tmp_path_factory.mktemp("photos")
    for n in PHOTOS:
        save_rgb(load_photo(n), d / f"{n}.png")
    return d


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def photos(photo_dir, tmp_path) -> Path:
    """A private, writable copy of the photo folder."""
    return copy_tree(photo_dir, tmp_path / "photos")


def exif_rotated_jpeg(im: Image.Image, path: Path, orientation: int = 6) -> Path:
    """Store the pixels rotated and an EXIF tag that tells viewers to rotate them back."""
    # Orientation 6 means: rotate 90 degrees clockwise to display. So store the image rotated counter-clockwise.
    stored = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, quality=92)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: on a shared 2-core machine, oversubscribed OpenMP threads are ~10x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def sample_or_skip(name: str, split: str = "test"):
    """The offline sample split, or skip the test with the reason it is missing."""
    from lookalike.data.samples import DataError, load_sample

    try:
        return load_sample(name, split)
    except DataError as exc:
        pytest.skip(f"sample data missing: {exc}")
