"""The edit-robust head: NT-Xent on photo-edit views, saved and loaded through the checkpoint loader."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike import get_embedder
from lookalike.data.photos import load_photo
from lookalike.data.photosets import generated_scene
from lookalike.retrieval.nets import save_embedder
from lookalike.training.datasets import ImageSet
from lookalike.training.feature_cache import view_features
from lookalike.training.trainer import HeadConfig, train_head

pytestmark = pytest.mark.slow  # trains a head


@pytest.fixture(scope="module")
def tiny() -> ImageSet:
    rng = np.random.default_rng(0)
    images = [generated_scene(rng, (96, 72)) for _ in range(5)] + [load_photo("coffee").convert("RGB").resize((120, 80))]
    return ImageSet(images, None, [], "tiny")  # no fingerprint: never cached


def test_edit_views_differ_from_simclr_views_and_repeat_per_seed(tiny):
    a = view_features(["efficientnet_lite0"], 64, tiny, 2, seed=1, progress=False, augment="edits")
    b = view_features(["efficientnet_lite0"], 64, tiny, 2, seed=1, progress=False, augment="edits")
    c = view_features(["efficientnet_lite0"], 64, tiny, 2, seed=1, progress=False, augment="simclr")
    assert a.shape == (6, 2, 1280) and np.allclose(a, b) and not np.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError):
        view_features(["efficientnet_lite0"], 64, tiny, 2, progress=False, augment="sepia")


def test_copy_head_trains_saves_and_loads(tiny, tmp_path):
    cfg = HeadConfig(input_size=64, views=2, epochs=3, batch_size=6, hidden=32, out_dim=16, output="hidden",
                     augment="edits", temperature=0.1)
    model, result = train_head(cfg, tiny, None, progress=False)
    assert len(result.history) == 3 and model.dim == 32 and result.extra["config"]["augment"] == "edits"
    path = save_embedder(tmp_path / "copy-head.pt", model, {"kind": "ntxent-copies"})
    loaded = get_embedder(f"checkpoint:{path}", cache=False)
    v = loaded.embed_images(tiny.images[:2])
    assert v.shape == (2, 32) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v, model.embed_images(tiny.images[:2]), atol=1e-5)
