"""Miners pick the right indices tuples on a crafted batch."""
import pytest
import torch

from lookalike.training.miners import MINERS, BatchHardMiner, HalvesPairMiner, SemiHardMiner, get_miner

# 1-D points: class 0 at 0, 1, 5; class 1 at 2, 10
EMB = torch.tensor([[0.0], [1.0], [5.0], [2.0], [10.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1])


def _as_set(trip):
    return {tuple(int(x) for x in t) for t in zip(*trip)}


def test_batch_hard_farthest_positive_nearest_negative():
    got = _as_set(BatchHardMiner()(EMB, LABELS))
    assert got == {(0, 2, 3), (1, 2, 3), (2, 0, 3), (3, 4, 1), (4, 3, 2)}


def test_semi_hard_band_and_fallbacks():
    got = _as_set(SemiHardMiner(margin=2.0)(EMB, LABELS))
    assert (0, 1, 3) in got      # d_ap 1, negative 3 at 2 lies in (1, 3)
    assert (0, 2, 4) in got      # d_ap 5: no negative in band; nearest farther one
    assert (1, 0, 4) in got      # negative 3 at distance 1 is not farther than p (1): skipped
    assert (3, 4, 2) in got      # d_ap 8: no negative farther: the farthest negative
    assert len(got) == 8         # one triplet per ordered positive pair


def test_halves_pair_miner_splits_positive_and_negative_pairs():
    labels = torch.tensor([0, 1, 2, 0, 3, 2])  # pairs (0,3) same, (1,4) different, (2,5) same
    a1, p, a2, n = HalvesPairMiner()(torch.zeros(6, 2), labels)
    assert _as_set((a1, p)) == {(0, 3), (2, 5)}
    assert _as_set((a2, n)) == {(1, 4)}


def test_get_miner_from_table():
    assert set(MINERS) == {"batch-hard", "semi-hard"}
    assert isinstance(get_miner("batch-hard", margin=0.3), BatchHardMiner)  # a parameter it does not take is dropped
    semi = get_miner("semi-hard", margin=0.3)
    assert isinstance(semi, SemiHardMiner) and semi.margin == 0.3
    with pytest.raises(ValueError, match="easy"):
        get_miner("easy")
