"""A short Siamese run on real sample data lowers the loss and beats the untrained network."""
import numpy as np
import pytest
import torch

from helpers import class_subset
from lookalike.data.samples import data_root
from lookalike.retrieval.metrics import retrieval_metrics
from lookalike.training.datasets import ImageSet, PairBatchSampler, PKBatchSampler, draw_pairs, load_images
from lookalike.training.trainer import SIAMESE_RECIPES, SiameseConfig, train_siamese

needs_mnist = pytest.mark.skipif(not (data_root() / "mnist-5k.npz").is_file(),
                                 reason=f"MNIST sample not found under {data_root()} (set LOOKALIKE_DATA)")


def test_pair_sampler_half_same_half_different():
    labels = np.repeat(np.arange(5), 20)
    i, j, same = draw_pairs(labels, 200, np.random.default_rng(0))
    assert same.sum() == 100
    assert np.all((labels[i] == labels[j]) == same)
    assert np.all(i[same] != j[same])
    i2, _, _ = draw_pairs(labels, 200, np.random.default_rng(1))
    assert not np.array_equal(i, i2)  # re-drawn


def test_pair_batches_hold_pairs_in_their_halves():
    labels = np.repeat(np.arange(5), 20)
    sampler = PairBatchSampler(labels, batch_size=10, seed=0)
    assert len(sampler) == 10
    first = list(sampler)
    assert len(first) == 10 and all(len(b) == 20 for b in first)
    same = np.concatenate([labels[b[:10]] == labels[b[10:]] for b in first])
    assert same.sum() == 50  # half of the drawn pairs are same-class
    assert not np.array_equal(np.concatenate(first), np.concatenate(list(sampler)))  # re-drawn on every pass


def test_recipes_pair_each_loss_with_its_miner_and_sampler():
    labels = np.repeat(np.arange(5), 20)
    for name, recipe in SIAMESE_RECIPES.items():
        cfg = SiameseConfig(loss=name, mining="semi-hard", p=4, k=5, batch_size=10)
        loss, miner, sampler = recipe(cfg, labels, cfg.resolved_margin())
        b = next(iter(sampler))
        z = torch.nn.functional.normalize(torch.randn(len(b), 8), dim=1)
        y = torch.as_tensor(labels[b])
        indices = miner(z, y)
        assert len(indices) == (4 if name == "contrastive" else 3)
        assert loss(z, y, indices).item() >= 0
    with pytest.raises(ValueError, match="hinge"):
        train_siamese(SiameseConfig(loss="hinge"), ImageSet([], labels, [], "x"))


def test_pk_sampler_shapes():
    labels = np.repeat(np.arange(6), [10, 10, 10, 10, 10, 3])
    batches = list(PKBatchSampler(labels, p=4, k=5, seed=0))
    assert batches
    for b in batches:
        assert len(b) == 20
        counts = np.unique(labels[b], return_counts=True)[1]
        assert len(counts) == 4 and np.all(counts == 5)


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("loss,mining", [("triplet", "batch-hard"), ("contrastive", "batch-hard")])
def test_short_run_learns(loss, mining, one_torch_thread):
    train = class_subset(load_images("mnist-sample", "train"), 100)
    test = class_subset(load_images("mnist-sample", "test"), 30)
    cfg = SiameseConfig(loss=loss, mining=mining, epochs=4, p=10, k=10, batch_size=64, lr=3e-3, seed=0)
    model, res = train_siamese(cfg, train, test, progress=False)
    assert res.history[-1] < res.history[0]
    assert res.metrics.p_at_1 > res.metrics_untrained.p_at_1
    assert res.metrics.map_at_r > res.metrics_untrained.map_at_r
    # the embedder API agrees with the trainer's own metrics
    q = model.embed_images(test.images)
    g = model.embed_images(train.images)
    assert q.shape == (len(test), 64)
    m = retrieval_metrics(q, test.labels, g, train.labels)
    assert m.p_at_1 == pytest.approx(res.metrics.p_at_1, abs=0.02)
