"""The photo denoiser ``ddpm-photo``: one checkpoint format, any size, tiling without seams, picked for photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lookalike.retrieval.checkpoint import read_checkpoint
from lookalike.retrieval.denoise import denoise_image, shipped_models
from lookalike.retrieval.denoise.diffusion import load_diffusion
from lookalike.retrieval.denoise.noise import add_noise_image
from lookalike.retrieval.denoise.query import _pick_model
from lookalike.retrieval.denoise.unet import UNet
from lookalike.retrieval.models import card_path, get_card
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _need() -> None:
    if "ddpm-photo" not in shipped_models():
        pytest.skip("shipped checkpoint ddpm-photo.pt not present under retrieval/weights/")


def _dev_crop(w: int = 128, h: int = 96) -> Image.Image:
    """A crop of scikit-learn's china.jpg (a dev photo) reduced 2x: real texture, edges and flat sky."""
    sklearn = pytest.importorskip("sklearn.datasets")
    im = Image.fromarray(sklearn.load_sample_image("china.jpg")).reduce(2)  # 320x214
    return im.crop((150, 60, 150 + w, 60 + h))


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i.convert("RGB"), dtype=np.float64) for i in (a, b))
    return float(10 * np.log10(255.0 ** 2 / ((x - y) ** 2).mean()))


def test_unet_without_attention_takes_any_size():
    net = UNet(3, base=8, mults=(1, 2, 2), attention=False).eval()
    assert net.config["attention"] is False and "attention" not in UNet(3, base=8).config
    with torch.inference_mode():
        for h, w in ((37, 53), (64, 64), (9, 130)):
            assert net(torch.randn(1, 3, h, w), torch.tensor([5])).shape == (1, 3, h, w)


def test_photo_model_loads_through_the_one_checkpoint_loader():
    _need()
    path = card_path(get_card("ddpm-photo"))
    ckpt = read_checkpoint(path, kinds=("ddpm",))
    assert ckpt.kind == "ddpm" and ckpt.config["image_size"] is None and ckpt.config["channels"] == 3
    assert ckpt.config["unet"]["attention"] is False and ckpt.metadata["patch"] == 64
    assert "skimage" not in ckpt.metadata["dataset"] and ckpt.metadata["cpu_time_s"] <= 600
    model = load_diffusion(path)
    assert model.any_size and model.image_size is None and model.channels == 3
    assert path.stat().st_size < 4_000_000


@pytest.mark.slow
def test_photo_denoising_raises_psnr_and_keeps_the_size():
    _need()
    clean = _dev_crop()
    noisy = add_noise_image(clean, 0.5, seed=1)  # sigma 0.5 on [-1, 1] = 0.25 on 0..1
    for sigma in (0.5, "auto"):
        res = denoise_image(noisy, method="ddim", sigma=sigma)
        assert res.model == "ddpm-photo" and res.method == "ddim" and res.fallback_reason is None
        assert res.image.size == clean.size and res.image.mode == "RGB"
        assert _psnr(res.image, clean) > _psnr(noisy, clean) + 4.0, (sigma, _psnr(res.image, clean), _psnr(noisy, clean))


def test_tiles_blend_without_seams():
    _need()
    model = load_diffusion(card_path(get_card("ddpm-photo")))
    clean = _dev_crop(200, 150)
    y = torch.from_numpy(np.asarray(add_noise_image(clean, 0.4, seed=2), dtype=np.float32) / 127.5 - 1)
    y = y.permute(2, 0, 1)[None]
    c = torch.from_numpy(np.asarray(clean, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    whole = model.denoise(y, 0.4, "ddim", 1)
    tiled = model.denoise_tiled(y, 0.4, 1, tile=64, overlap=16)  # 4x3 tiles
    assert tiled.shape == y.shape
    err = (tiled - whole).abs()  # the whole-image result has no seams; tiles differ by GroupNorm statistics
    assert float(err.mean()) < 0.04, float(err.mean())
    assert float(((tiled - c) ** 2).mean()) < 1.1 * float(((whole - c) ** 2).mean())
    # a seam is a jump of that difference across a tile border (hard cuts, overlap 1: 0.011 across columns, 0.028
    # across rows; blended: <= 0.005); the outer 3 px differ anyway (the whole image is reflect-padded to 152 rows)
    for axis in (3, 2):
        prof = err.mean(dim=tuple(a for a in (0, 1, 2, 3) if a != axis))[3:-3]
        assert float((prof[1:] - prof[:-1]).abs().max()) < 0.008, (axis, float((prof[1:] - prof[:-1]).abs().max()))


def test_pick_model_takes_the_photo_model_for_other_sizes_and_keeps_the_small_ones():
    _need()
    for w, h, gray in ((100, 80, False), (100, 80, True), (28, 28, False), (640, 427, False)):
        diffusion, name, reason = _pick_model(w, h, gray, None)
        assert name == "ddpm-photo" and diffusion.any_size and reason is None, (w, h, gray)
    if "ddpm-mnist" in shipped_models():
        assert _pick_model(28, 28, True, None)[1] == "ddpm-mnist"
    if "ddpm-cifar10" in shipped_models():
        assert _pick_model(32, 32, False, None)[1] == "ddpm-cifar10"
