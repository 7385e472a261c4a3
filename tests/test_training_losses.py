"""Each loss against a small hand-computed case, through the one call ``loss(embeddings, labels, indices_tuple)``."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.training.datasets import PairBatchSampler
from lookalike.training.losses import ContrastiveLoss, NTXentLoss, SupConLoss, TripletMarginLoss, all_pairs
from lookalike.training.miners import HalvesPairMiner, get_miner


def test_contrastive_hand_case():
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 0, 2])
    pairs = HalvesPairMiner()(emb, labels)  # (0, 2) same class, (1, 3) different
    assert [t.tolist() for t in pairs] == [[0], [2], [1], [3]]
    # same pair at distance 5: 0.5 * 25; different pair at distance 1 with margin 2: 0.5 * (2 - 1)^2
    assert ContrastiveLoss(margin=2.0)(emb, labels, pairs).item() == pytest.approx((12.5 + 0.5) / 2)
    # a different pair beyond the margin costs nothing
    neg_only = (pairs[0][:0], pairs[1][:0], pairs[2], pairs[3])
    assert ContrastiveLoss(margin=0.5)(emb, labels, neg_only).item() == pytest.approx(0.0)


def test_contrastive_without_pairs_uses_every_pair():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.6, 0.8]])
    labels = torch.tensor([0, 0, 1])
    # ordered pairs: (0,1),(1,0) same at 5; (0,2),(2,0) different at 1; (1,2),(2,1) different at 4.2 > margin 2
    expected = 0.5 * (2 * 25 + 2 * 1 + 0) / 6
    assert ContrastiveLoss(margin=2.0)(emb, labels).item() == pytest.approx(expected)
    assert ContrastiveLoss(margin=2.0)(emb, labels, all_pairs(labels)).item() == pytest.approx(expected)


def test_triplet_hand_case_all_triplets():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    s5, s13 = math.sqrt(5), math.sqrt(13)
    m = 1.5
    terms = [1 - 2 + m, max(0, 1 - 3 + m),           # a=0, p=1, n=2 / n=3
             1 - s5 + m, 1 - 2 + m,                  # a=1, p=0
             s13 - 2 + m, s13 - s5 + m,              # a=2, p=3
             s13 - 3 + m, s13 - 2 + m]               # a=3, p=2
    assert TripletMarginLoss(m)(emb, labels).item() == pytest.approx(sum(terms) / 8, rel=1e-5)


def test_triplet_given_triplets_and_empty():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    trip = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert TripletMarginLoss(1.5)(emb, labels, trip).item() == pytest.approx(0.5)
    empty = (torch.tensor([], dtype=torch.long),) * 3
    loss = TripletMarginLoss(1.5)(emb, labels, empty)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable
    none = (torch.tensor([], dtype=torch.long),) * 4
    loss = ContrastiveLoss(1.0)(emb, labels, none)
    assert loss.item() == 0.0
    loss.backward()


def test_ntxent_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # anchor e1: positive e1 (cos 1), negatives e2, e2 (cos 0); temperature 1
    expected = math.log((math.e + 2) / math.e)
    views = torch.cat([z, z.clone()])
    ids = torch.tensor([0, 1, 0, 1])
    assert NTXentLoss(temperature=1.0)(views, ids).item() == pytest.approx(expected, rel=1e-6)


def test_ntxent_matches_simclr_cross_entropy_form():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t = 0.05
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(6, 12), torch.arange(0, 6)])
    ref = F.cross_entropy(sim, target)
    ids = torch.arange(6).repeat(2)
    assert NTXentLoss(t)(torch.cat([z1, z2]), ids).item() == pytest.approx(ref.item(), rel=1e-5)


def test_supcon_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    views = torch.cat([z, z.clone()])
    labels = torch.tensor([0, 0, 0, 0])  # both images one class: every other row is a positive
    # anchor e1: positives at cos 0, 1, 0; denominator e^0 + e^1 + e^0
    expected = math.log(math.e + 2) - 1 / 3
    assert SupConLoss(temperature=1.0)(views, labels).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_pairs_restrict_positives_and_negatives():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    # anchor 0 only: positive 2 (cos 1), negative 1 (cos 0): -log(e / (e + 1))
    pairs = (torch.tensor([0]), torch.tensor([2]), torch.tensor([0]), torch.tensor([1]))
    assert SupConLoss(1.0)(z, labels, pairs).item() == pytest.approx(math.log((math.e + 1) / math.e), rel=1e-6)


def test_bad_hyperparameters():
    with pytest.raises(ValueError):
        ContrastiveLoss(margin=0)
    with pytest.raises(ValueError):
        NTXentLoss(temperature=0)


# --- the shipped recipes give the same loss as the formulas they were trained with ---------------------------

def _batch(n: int = 24, dim: int = 8, classes: int = 4):
    g = torch.Generator().manual_seed(3)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1), torch.arange(n) % classes


def test_contrastive_recipe_equals_pair_formula():
    """Contrastive recipe: drawn pairs (i, j, same) scored as ``0.5 * mean(same d^2 + (1 - same) max(0, m - d)^2)``."""
    labels_np = np.repeat(np.arange(4), 6)
    sampler = PairBatchSampler(labels_np, batch_size=10, seed=0)
    b = next(iter(sampler))
    g = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(len(b), 8, generator=g), dim=1)
    labels = torch.as_tensor(labels_np[b])
    half = len(b) // 2
    same = (labels[:half] == labels[half:]).float()
    assert 0 < same.sum() < half
    d = torch.linalg.vector_norm(z[:half] - z[half:], dim=1)
    old = 0.5 * (same * d.pow(2) + (1 - same) * torch.clamp(1.0 - d, min=0).pow(2)).mean()
    new = ContrastiveLoss(1.0)(z, labels, HalvesPairMiner()(z, labels))
    assert new.item() == pytest.approx(old.item(), rel=1e-6)


@pytest.mark.parametrize("mining", ["batch-hard", "semi-hard"])
def test_triplet_recipe_equals_triplet_formula(mining):
    """Triplet recipe: the miner's (a, p, n) scored as ``mean(max(0, d(a,p) - d(a,n) + 0.2))``."""
    z, labels = _batch()
    miner = get_miner(mining, margin=0.2)
    a, p, n = miner(z, labels)
    assert len(a) > 0
    old = torch.clamp(torch.linalg.vector_norm(z[a] - z[p], dim=1) - torch.linalg.vector_norm(z[a] - z[n], dim=1)
                      + 0.2, min=0).mean()
    assert TripletMarginLoss(0.2)(z, labels, (a, p, n)).item() == pytest.approx(old.item(), rel=1e-6)


@pytest.mark.parametrize("supervised", [False, True])
def test_head_recipes_equal_softmax_formula(supervised):
    """NT-Xent / SupCon recipes: two views per image; for each row, mean over positives of -log softmax over the
    other rows, computed here row by row."""
    z, classes = _batch(n=12)
    z1, z2 = z[:6], z[6:]
    lab = classes[:6] if supervised else torch.arange(6)
    labels = torch.cat([lab, lab])
    emb = torch.cat([z1, z2])
    t = 0.05
    rows = []
    for i in range(12):
        others = [j for j in range(12) if j != i]
        logits = torch.stack([emb[i] @ emb[j] / t for j in others])
        lsm = logits - torch.logsumexp(logits, 0)
        pos = [k for k, j in enumerate(others) if labels[j] == labels[i]]
        rows.append(-lsm[pos].mean())
    old = torch.stack(rows).mean()
    loss = SupConLoss(t) if supervised else NTXentLoss(t)
    assert loss(emb, labels).item() == pytest.approx(old.item(), rel=1e-5)
