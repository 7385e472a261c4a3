"""Query denoising API: sigma estimation, classical / DDPM / DDIM denoising, fallbacks, consistency, CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import sample_or_skip
from lookalike.retrieval.denoise import (
    DenoiseError,
    consistency_score,
    denoise_image,
    estimate_sigma,
    shipped_models,
)
from lookalike.retrieval.denoise.noise import add_noise, add_noise_image, from_unit, psnr, to_unit
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")
_sample = sample_or_skip


def _pil(u8: np.ndarray) -> Image.Image:
    return Image.fromarray(u8).convert("RGB")


def _noisy(name: str, idx: int, sigma: float, seed: int = 0) -> tuple[Image.Image, torch.Tensor]:
    x = to_unit(_sample(name).images[idx : idx + 1])
    y = add_noise(x, sigma, torch.Generator().manual_seed(seed))
    return _pil(from_unit(y)[0]), x


def _psnr_img(im: Image.Image, x: torch.Tensor) -> float:
    a = to_unit(np.asarray(im)[None])
    if x.shape[1] == 1:
        a = a[:, :1]
    return float(psnr(a, x)[0])


def _need(name: str) -> None:
    if name not in shipped_models():
        pytest.skip(f"shipped checkpoint {name}.pt not present under retrieval/weights/")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_sigma_estimator_within_20_percent(name):
    imgs = _sample(name).images[:40]
    for sigma in (0.1, 0.2, 0.3, 0.5, 0.8, 1.0):
        errs = []
        for i in range(len(imgs)):
            y = add_noise(to_unit(imgs[i : i + 1]), sigma, torch.Generator().manual_seed(i))
            errs.append(abs(estimate_sigma(_pil(from_unit(y)[0])) - sigma) / sigma)
        assert np.median(errs) < 0.2, (name, sigma, float(np.median(errs)))


def test_noise_on_a_pil_image_matches_the_tensor_helper():
    gray = _pil(_sample("mnist").images[0])
    noisy = add_noise_image(gray, 0.5, seed=3)
    a = np.asarray(noisy)
    assert noisy.mode == "RGB" and noisy.size == gray.size and (a == a[..., :1]).all()  # stays grayscale
    x = to_unit(np.asarray(gray)[None, ..., 0])
    assert np.array_equal(a[..., 0], from_unit(add_noise(x, 0.5, torch.Generator().manual_seed(3)))[0])
    assert add_noise_image(gray, 0.5, seed=3) == noisy and add_noise_image(gray, 0.5, seed=4) != noisy
    colour = _pil(_sample("cifar10").images[0])
    n = np.asarray(add_noise_image(colour, 0.3)).astype(np.int16) - np.asarray(colour).astype(np.int16)
    assert np.abs(n[..., 0] - n[..., 1]).mean() > 5  # independent noise per channel
    assert 0.2 < estimate_sigma(add_noise_image(colour, 0.3)) < 0.4


def test_classical_denoising_raises_psnr():
    im, x = _noisy("mnist", 0, 0.5)
    res = denoise_image(im, method="classical", sigma=0.5)
    assert res.method == "classical" and res.model is None and res.image.size == im.size
    assert _psnr_img(res.image, x) > _psnr_img(im, x) + 1.0


@pytest.mark.parametrize("name,method", [("mnist", "ddim"), ("mnist", "ddpm"), ("cifar10", "ddim")])
def test_ddpm_denoising_raises_psnr(name, method):
    _need(f"ddpm-{name}")
    gains = []
    for i in range(4):
        im, x = _noisy(name, i, 0.5, seed=i)
        res = denoise_image(im, method=method, sigma="auto")
        assert res.method == method and res.model == f"ddpm-{name}" and res.fallback_reason is None
        assert res.sigma_estimated and 0.3 < res.sigma < 0.7
        assert res.image.size == im.size and res.image.mode == "RGB"
        gains.append(_psnr_img(res.image, x) - _psnr_img(im, x))
    assert np.mean(gains) > 2.0, gains


def test_auto_picks_domain_model_and_falls_back_for_other_sizes():
    _need("ddpm-mnist")
    im, _ = _noisy("mnist", 1, 0.3)
    assert denoise_image(im).method == "ddim"
    big = im.resize((40, 40))
    res = denoise_image(big, method="ddim", sigma=0.3, model="ddpm-mnist")
    assert res.method == "classical" and res.model is None
    assert "40x40" in res.fallback_reason and res.image.size == (40, 40)
    if "ddpm-photo" in shipped_models():  # other sizes: the fully convolutional photo model
        res = denoise_image(big, method="ddim", sigma=0.3)
        assert res.method == "ddim" and res.model == "ddpm-photo" and res.image.size == (40, 40)
    colour = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8))
    res = denoise_image(colour, method="ddpm", sigma=0.3, model="ddpm-mnist")
    assert res.method == "classical" and "colour" in res.fallback_reason


def test_multiple_samples_and_consistency():
    _need("ddpm-mnist")
    im, _ = _noisy("mnist", 2, 0.8)
    res = denoise_image(im, method="ddpm", sigma=0.8, n_samples=3, steps=10, seed=1)
    assert len(res.samples) == 3 and res.image is res.samples[0]
    a, b = (np.asarray(s, dtype=np.int16) for s in res.samples[:2])
    assert np.abs(a - b).max() > 0  # ancestral samples differ
    res2 = denoise_image(im, method="ddim", sigma=0.8, n_samples=2)
    assert len(res2.samples) == 2
    assert consistency_score([[1, 2, 3], [1, 2, 3]]) == 1.0
    assert consistency_score([[1, 2], [3, 4]]) == 0.0
    assert consistency_score([[1, 2], [1, 3], [1, 2]]) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert consistency_score([[5]]) == 1.0


def test_bad_inputs_raise_one_line_errors(tmp_path):
    im = Image.new("RGB", (28, 28))
    with pytest.raises(DenoiseError, match="--method"):
        denoise_image(im, method="magic")
    with pytest.raises(DenoiseError, match="--sigma"):
        denoise_image(im, sigma=-1.0)
    with pytest.raises(DenoiseError, match="--model"):
        denoise_image(im, method="ddim", model=str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"xx")
    with pytest.raises(DenoiseError, match="bad.pt"):
        denoise_image(im, method="ddim", model=str(bad))
    res = denoise_image(im, sigma=0.0)
    assert res.method == "none" and res.image.size == (28, 28)


def test_cli_denoise_writes_png_and_reports(tmp_path, capsys):
    from lookalike.cli import main

    im, _ = _noisy("mnist", 3, 0.5)
    src = tmp_path / "noisy.png"
    im.save(src)
    out = tmp_path / "clean.png"
    assert main(["denoise", str(src), "--out", str(out), "--method", "classical", "--sigma", "0.5", "--json"]) == 0
    assert Image.open(out).size == (28, 28)
    assert '"method": "classical"' in capsys.readouterr().out
    assert main(["denoise", str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing.png" in err and len(err.strip().splitlines()) == 1


def test_fixed_size_denoisers_run_compiled_with_torch_results(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    import torch

    from lookalike.retrieval.denoise.compiled import compiled_eps
    from lookalike.retrieval.denoise.query import resolve_model
    from lookalike.retrieval.models import card_path, get_card

    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    d = resolve_model("ddpm-cifar10")
    path = card_path(get_card("ddpm-cifar10"))
    eps = compiled_eps(d, path)
    blob = next((tmp_path / "denoisers").glob("*-fp32.blob"))
    x, t = torch.randn(3, 3, 32, 32), torch.tensor([3, 250, 900])
    with torch.inference_mode():
        assert (eps(x, t) - d.unet(x, t)).abs().max().item() < 1e-4
    stamp = blob.stat().st_mtime_ns
    assert compiled_eps(d, path) is not None and blob.stat().st_mtime_ns == stamp  # the cache is reused
    blob.write_bytes(blob.read_bytes()[:-50])  # damaged: compiled again, same results
    again = compiled_eps(d, path)
    with torch.inference_mode():
        assert (again(x, t) - d.unet(x, t)).abs().max().item() < 1e-4
    assert compiled_eps(resolve_model("ddpm-photo"), card_path(get_card("ddpm-photo"))) is None  # any size: torch
