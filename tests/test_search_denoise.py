"""`lookalike search --denoise` on a real index: results come back with the method and sigma used."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.export import export_split
from lookalike.data.photos import load_photo
from lookalike.data.samples import load_sample
from lookalike.retrieval.denoise.noise import add_noise_image
from helpers import needs_samples

pytestmark = pytest.mark.slow  # DDPM-denoised searches through the command line


def _noisy(arr: np.ndarray, sigma: float, seed: int = 0) -> Image.Image:
    """y = x + sigma * n with pixels in [-1, 1], back to 8 bits."""
    return add_noise_image(Image.fromarray(arr), sigma, seed)


@pytest.fixture(scope="module")
def mnist_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    train = load_sample("mnist", "train")
    sub = type(train)(images=train.images[:300], labels=train.labels[:300], classes=train.classes)
    export_split(sub, d / "gallery", prefix="train-", progress=False)
    engine = Engine.open(d / "idx", model="siamese-mnist")
    engine.add([d / "gallery"], progress=False, workers=0)
    engine.close()
    return d


@needs_samples
def test_search_with_denoise_reports_method_and_sigma(mnist_index, tmp_path, capsys):
    test = load_sample("mnist", "test")
    q = tmp_path / "noisy.png"
    _noisy(test.images[0], 0.5).save(q)
    assert cli(["search", str(q), "--db", str(mnist_index / "idx"), "-k", "5", "--denoise", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 5 and out["results"][0]["rank"] == 1
    den = out["denoise"]
    assert den["method"] in ("ddpm", "ddim")
    assert den["sigma_estimated"] is True and 0.3 < den["sigma"] < 0.7
    # a given sigma is used as given, and the text output names it
    assert cli(["search", str(q), "--db", str(mnist_index / "idx"), "-k", "3", "--denoise", "ddim", "--sigma", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "denoised with ddim, sigma 0.500 (given)" in text


@needs_samples
def test_denoised_queries_find_the_right_digit_more_often(mnist_index):
    test = load_sample("mnist", "test")
    engine = Engine.open(mnist_index / "idx")
    gallery_labels = {}
    for p in (mnist_index / "gallery").rglob("*.png"):
        gallery_labels[str(p)] = int(p.parent.name)
    noisy_hits = clean_hits = 0
    for i in range(30):
        img = _noisy(test.images[i], 0.5, seed=i)
        noisy_hits += gallery_labels[engine.search(img, k=1)[0].path] == test.labels[i]
        res = engine.search(img, k=1, denoise="ddim", sigma=0.5)
        clean_hits += gallery_labels[res[0].path] == test.labels[i]
    engine.close()
    assert clean_hits > noisy_hits, (clean_hits, noisy_hits)


def test_photos_fuse_under_auto_and_use_the_photo_model_or_classical_when_asked(tmp_path):
    from lookalike.retrieval.denoise import shipped_models

    d = tmp_path / "photos"
    d.mkdir()
    for n in ("astronaut", "coffee", "rocket"):
        load_photo(n).convert("RGB").resize((96, 64)).save(d / f"{n}.png")
    engine = Engine.open(tmp_path / "idx", model="pixels")
    engine.add([d], progress=False, workers=0)
    arr = np.asarray(load_photo("coffee").convert("RGB").resize((96, 64)))
    res = engine.search(_noisy(arr, 0.6), k=2, denoise="auto")  # a photo: the low-frequency rule, not a DDPM
    assert res.denoise.method == "lowfreq" and res.lowfreq_weight > 0 and "photo" in res.denoise.fallback_reason
    assert res[0].path.endswith("coffee.png")
    res = engine.search(_noisy(arr, 0.2), k=2, denoise="ddim")
    if "ddpm-photo" in shipped_models():  # fully convolutional: any size
        assert res.denoise.method == "ddim" and res.denoise.model == "ddpm-photo" and not res.denoise.fallback_reason
    else:
        assert res.denoise.method == "classical" and res.denoise.fallback_reason
    assert res[0].path.endswith("coffee.png")
    res = engine.search(arr, k=2, denoise="auto")  # a clean photo is not denoised
    assert res.denoise.method == "none" and res.lowfreq_weight == 0
    assert res[0].path.endswith("coffee.png")
    res = engine.search(_noisy(arr, 0.2), k=2, denoise="classical")
    assert res.denoise.method == "classical" and res[0].path.endswith("coffee.png")
    assert res.consistency is None  # one deterministic sample: nothing to compare
    # a fixed-size model named for a photo-sized query falls back to the classical path, saying why
    res = engine.search(_noisy(arr, 0.2), k=2, denoise="auto", denoise_model="ddpm-cifar10")
    assert res.denoise.method == "classical" and "96x64" in res.denoise.fallback_reason
    assert res[0].path.endswith("coffee.png")
    engine.close()


@needs_samples
def test_several_samples_give_a_consistency_score(mnist_index):
    test = load_sample("mnist", "test")
    engine = Engine.open(mnist_index / "idx")
    res = engine.search(_noisy(test.images[3], 0.5), k=5, denoise="ddpm", sigma=0.5, n_samples=3)
    assert len(res.denoise.samples) == 3 and res.denoise.method == "ddpm"
    assert res.consistency is not None and 0.0 <= res.consistency <= 1.0
    engine.close()
