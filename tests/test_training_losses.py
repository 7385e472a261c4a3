"""Each loss against a small hand-computed case."""
import math

import pytest
import torch
import torch.nn.functional as F

from lookalike.training.losses import ContrastiveLoss, NTXentLoss, SupConLoss, TripletMarginLoss


def test_contrastive_hand_case():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    same = torch.tensor([True, False])
    # same pair at distance 5: 0.5 * 25; different pair at distance 1 with margin 2: 0.5 * (2 - 1)^2
    assert ContrastiveLoss(margin=2.0)(a, b, same).item() == pytest.approx((12.5 + 0.5) / 2)
    # a different pair beyond the margin costs nothing
    assert ContrastiveLoss(margin=0.5)(a[1:], b[1:], same[1:]).item() == pytest.approx(0.0)


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


def test_ntxent_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # anchor e1: positive e1 (cos 1), negatives e2, e2 (cos 0); temperature 1
    expected = math.log((math.e + 2) / math.e)
    assert NTXentLoss(temperature=1.0)(z, z.clone()).item() == pytest.approx(expected, rel=1e-6)


def test_ntxent_matches_simclr_cross_entropy_form():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t = 0.05
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(6, 12), torch.arange(0, 6)])
    ref = F.cross_entropy(sim, target)
    assert NTXentLoss(t)(z1, z2).item() == pytest.approx(ref.item(), rel=1e-5)


def test_supcon_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])  # both images one class: every other row is a positive
    # anchor e1: positives at cos 0, 1, 0; denominator e^0 + e^1 + e^0
    expected = math.log(math.e + 2) - 1 / 3
    assert SupConLoss(temperature=1.0)(z, z.clone(), labels).item() == pytest.approx(expected, rel=1e-6)
    # with distinct labels SupCon is NT-Xent
    assert SupConLoss(1.0)(z, z.clone(), torch.tensor([0, 1])).item() == pytest.approx(
        NTXentLoss(1.0)(z, z.clone()).item())


def test_bad_hyperparameters():
    with pytest.raises(ValueError):
        ContrastiveLoss(margin=0)
    with pytest.raises(ValueError):
        NTXentLoss(temperature=0)
