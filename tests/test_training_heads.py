"""Projection head on a frozen backbone: a short NT-Xent / SupCon run on real CIFAR-10-sample images."""
import numpy as np
import pytest

from helpers import class_subset
from lookalike.data.samples import data_root
from lookalike.training.datasets import load_images
from lookalike.retrieval.metrics import retrieval_metrics
from lookalike.training.feature_cache import clean_features, view_features
from lookalike.training.trainer import HeadConfig, train_head

pytestmark = pytest.mark.slow  # trains heads on a frozen backbone

needs_cifar = pytest.mark.skipif(not (data_root() / "cifar10-sample.npz").is_file(),
                                 reason=f"CIFAR-10 sample not found under {data_root()} (set LOOKALIKE_DATA)")


@needs_cifar
def test_head_short_run(tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    train = class_subset(load_images("cifar10-sample", "train"), 12, "tr")
    test = class_subset(load_images("cifar10-sample", "test"), 4, "te")
    views = view_features(["efficientnet_lite0"], 64, train, 3, seed=0, progress=False)
    assert views.shape == (120, 3, 1280)
    assert not np.allclose(views[:, 0], views[:, 1])  # the views differ
    again = view_features(["efficientnet_lite0"], 64, train, 2, seed=0, progress=False)  # sliced from the cache
    np.testing.assert_array_equal(again, views[:, :2])
    for supervised in (False, True):
        cfg = HeadConfig(input_size=64, views=3, epochs=15, batch_size=60, hidden=64, out_dim=16,
                         supervised=supervised, temperature=0.1)
        emb, res = train_head(cfg, train, test, progress=False)
        assert res.history[-1] < res.history[0]
        assert res.metrics.n_queries == len(test)
        # "auto" keeps the output (hidden layer or projection) that retrieves best on the training images
        sel = res.extra["selection_train_map_at_r"]
        assert set(sel) == {"hidden", "projection"} and emb.output == max(sel, key=sel.get)
        assert emb.embed_images(test.images[:2]).shape == (2, cfg.hidden if emb.output == "hidden" else cfg.out_dim)
    # supervised contrastive learns the training labels: leave-one-out retrieval on the training images
    # beats the frozen backbone's
    base = retrieval_metrics(clean_features(["efficientnet_lite0"], 64, train, progress=False), train.labels)
    assert res.extra["selection_train_map_at_r"][emb.output] > base.map_at_r + 0.05
