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


def test_koleo_is_lower_for_a_spread_batch_than_a_collapsed_one():
    import torch

    from lookalike.training.trainer import koleo_loss

    g = torch.Generator().manual_seed(0)
    spread = torch.randn(64, 16, generator=g)
    collapsed = torch.ones(64, 16) + 0.01 * torch.randn(64, 16, generator=g)
    assert float(koleo_loss(spread)) < float(koleo_loss(collapsed)) - 1.0
    # duplicates of one row are at distance 0: finite, and the largest penalty
    assert torch.isfinite(koleo_loss(torch.ones(4, 8)))


def test_every_edit_kind_applies_and_the_kinds_split_into_groups():
    from lookalike.training.copy_views import apply_kind, edit_kinds

    kinds = edit_kinds()
    assert len(kinds) == len(set(kinds)) == 59 and "screenshot" in kinds and "edit-crop-strong" in kinds
    im = load_photo("coffee").convert("RGB").resize((160, 120))
    for kind in ("vflip", "edit-mirror-strong", "combo3-geo"):
        out = apply_kind(im, kind, seed=3)
        assert out.mode == "RGB" and not np.array_equal(np.asarray(out.resize(im.size)), np.asarray(im))


def test_fit_copy_head_with_koleo_separates_images(tiny):
    from lookalike.training.copy_views import fit_copy_head

    a = view_features(["efficientnet_lite0"], 64, tiny, 3, seed=2, progress=False, augment="edits")
    from lookalike.training.feature_cache import clean_features

    clean = clean_features(["efficientnet_lite0"], 64, tiny, progress=False)
    head = fit_copy_head(clean, a, epochs=30, koleo=1.0, hidden=64, out_dim=16, batch_size=6, temperature=0.1)
    import torch

    with torch.inference_mode():
        z = torch.nn.functional.normalize(head.hidden(torch.from_numpy(a[:, 0])), dim=1)
        g = torch.nn.functional.normalize(head.hidden(torch.from_numpy(clean)), dim=1)
    # each edited view's nearest clean image is its own
    assert (z @ g.T).argmax(1).tolist() == list(range(len(tiny)))
