"""The one accuracy calculator, on cases small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.retrieval.metrics import knn, map_at_r, precision_at_k, recall_at_k, retrieval_metrics


def test_map_at_r_hand_case():
    # R = 3 relevant items; hits at ranks 1 and 3 within the first R: (1/1 + 2/3) / 3
    rel = np.array([[1, 0, 1, 1, 0]], bool)
    assert map_at_r(rel, np.array([3])) == pytest.approx((1 + 2 / 3) / 3)
    assert precision_at_k(rel, 1) == 1.0 and precision_at_k(rel, 4) == 0.75


def test_recall_at_k_hand_case():
    truth = np.array([[1, 2, 3], [4, 5, -1]])        # the second query has two true neighbours (-1: padding)
    found = np.array([[3, 9, 1], [5, -1, -1]])
    assert recall_at_k(found, truth) == pytest.approx(3 / 5)
    assert recall_at_k([[3], [4, 5]], truth) == pytest.approx(3 / 5)  # ragged candidate lists
    assert recall_at_k(truth, truth) == 1.0 and recall_at_k([[]], [[-1]]) == 1.0


def test_retrieval_metrics_on_a_crafted_gallery():
    # 2-D points: class 0 along +x, class 1 along +y; one class-1 gallery point sits on the x axis
    gallery = np.array([[1, 0.0], [1, 0.1], [0.1, 1], [0, 1], [1, 0.05]], np.float32)
    g_lab = np.array([0, 0, 1, 1, 1])
    queries = np.array([[1, 0.02], [0, 1]], np.float32)
    q_lab = np.array([0, 1])
    m = retrieval_metrics(queries, q_lab, gallery, g_lab)
    # query 0 ranks: [1,0] (0), [1,.05] (1), [1,.1] (0) ... -> R=2, first two: hit, miss -> AP@R = 1/2
    # query 1 ranks: [0,1] (1), [.1,1] (1), ... -> R=3, first three: hit, hit, miss -> (1 + 1) / 3
    assert m.map_at_r == pytest.approx((0.5 + 2 / 3) / 2)
    assert m.p_at_1 == 1.0
    assert (m.n_queries, m.n_gallery) == (2, 5)


def test_leave_one_out_excludes_self():
    x = np.eye(4, dtype=np.float32)
    x[1] = [0.9, 0.1, 0, 0]
    labels = np.array([0, 0, 1, 2])
    m = retrieval_metrics(x, labels)
    s, i = knn(x, x, k=1, exclude_self=True)
    assert i[0, 0] == 1 and i[1, 0] == 0
    assert m.p_at_1 == pytest.approx(0.5)  # items 0 and 1 find each other; 2 and 3 have no partner


def test_random_embeddings_score_near_chance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    y = rng.integers(0, 10, 400)
    m = retrieval_metrics(x[:100], y[:100], x[100:], y[100:])
    assert 0.03 < m.p_at_1 < 0.25 and m.map_at_r < 0.2
