"""Miners pick the right triplets on a crafted batch."""
import torch

from lookalike.training.miners import BatchHardMiner, SemiHardMiner, get_miner

# 1-D points: class 0 at 0, 1, 5; class 1 at 2, 10
EMB = torch.tensor([[0.0], [1.0], [5.0], [2.0], [10.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1])


def _as_set(trip):
    return {(int(a), int(p), int(n)) for a, p, n in zip(*trip)}


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


def test_get_miner():
    assert isinstance(get_miner("batch-hard"), BatchHardMiner)
    assert isinstance(get_miner("semi-hard", 0.3), SemiHardMiner)
    try:
        get_miner("easy")
    except ValueError as exc:
        assert "easy" in str(exc)
    else:
        raise AssertionError("unknown miner accepted")
