"""Search-knob tuning on real vectors (MNIST-sample pixels) and in the engine (real FAISS, real SQLite)."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

import lookalike.retrieval.maintainer as maintainer_mod
from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.photos import photo_crops
from lookalike.retrieval.index import VectorIndex
from lookalike.retrieval.tune import EF_STEPS, NPROBE_STEPS, ExactTopK, measure_recall, tune
from helpers import sample_or_skip


@pytest.fixture(scope="module")
def mnist_vectors() -> np.ndarray:
    """4,000 real MNIST digits as unit pixel vectors (784-d)."""
    arr = sample_or_skip("mnist", "train")
    x = arr.images.reshape(len(arr.images), -1).astype(np.float32)
    x -= x.mean(0, keepdims=True)  # centred: raw pixel vectors are all-positive and nearly parallel
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact(vectors: np.ndarray, n_queries: int = 200, chunk: int = 700) -> ExactTopK:
    ids = np.arange(len(vectors), dtype=np.int64) + 1000
    pick = np.random.default_rng(0).choice(len(vectors), n_queries, replace=False)
    ex = ExactTopK(ids[pick], vectors[pick])
    for s in range(0, len(vectors), chunk):
        ex.add(ids[s : s + chunk], vectors[s : s + chunk])
    return ex


def _index(factory: str, vectors: np.ndarray) -> VectorIndex:
    ids = np.arange(len(vectors), dtype=np.int64) + 1000
    vi = VectorIndex.create(vectors.shape[1], factory, train_vectors=vectors)
    vi.add(ids, vectors)
    return vi


def test_exact_top_k_streamed_in_chunks_equals_brute_force(mnist_vectors):
    x = mnist_vectors[:1500]
    ex = _exact(x, n_queries=50, chunk=333)
    qi = ex.query_ids - 1000
    sims = x[qi] @ x.T
    sims[np.arange(len(qi)), qi] = -np.inf  # not its own neighbour
    want = np.argsort(-sims, axis=1, kind="stable")[:, :10] + 1000
    assert ex.seen == 1500
    assert all(set(a) == set(b) for a, b in zip(ex.ids, want))
    assert not np.any(ex.ids == ex.query_ids[:, None])


def test_tune_picks_the_smallest_hnsw_ef_that_reaches_the_target(mnist_vectors):
    ex = _exact(mnist_vectors)
    vi = _index("HNSW32", mnist_vectors)
    res = tune(vi, ex, target=0.97)
    assert res.reached and res.ef_search in EF_STEPS and res.recall_at_k >= 0.97
    assert faiss.downcast_index(vi.index.index).hnsw.efSearch == res.ef_search  # left set on the index
    assert measure_recall(vi, ex) == pytest.approx(res.recall_at_k, abs=1e-4)
    if res.ef_search != EF_STEPS[0]:  # one step cheaper misses the target
        vi.set_params(ef_search=EF_STEPS[EF_STEPS.index(res.ef_search) - 1])
        assert measure_recall(vi, ex) < 0.97


@pytest.mark.slow
def test_tune_ivf_nprobe_and_pq_shortlist(mnist_vectors):
    ex = _exact(mnist_vectors)
    ivf = _index("IVF64,Flat", mnist_vectors)
    r = tune(ivf, ex)
    assert r.reached and r.nprobe in NPROBE_STEPS and r.refine_factor is None
    ivf.set_params(nprobe=1)
    assert measure_recall(ivf, ex) < r.recall_at_k or r.nprobe == 1
    # a coarse PQ code alone is far from the target; the tuned re-rank shortlist reaches it
    pq = _index("IVF64,PQ8", mnist_vectors)
    pq.set_params(nprobe=64)
    assert measure_recall(pq, ex) < 0.9
    r = tune(pq, ex, refine=True)
    assert r.reached and r.refine_factor is not None
    assert measure_recall(pq, ex, shortlist=10 * r.refine_factor) >= 0.95


@pytest.mark.slow
def test_unreachable_target_keeps_the_best_knobs(mnist_vectors):
    ex = _exact(mnist_vectors[:2000], n_queries=100)
    vi = _index("IVF32,PQ4", mnist_vectors[:2000])
    r = tune(vi, ex, target=1.01)
    assert not r.reached and 0 < r.recall_at_k < 1.01
    assert measure_recall(vi, ex) == pytest.approx(r.recall_at_k, abs=1e-4)


def test_engine_tunes_on_build_remembers_knobs_and_drops_hnsw_that_misses(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(maintainer_mod, "TUNE_MIN_VECTORS", 50)
    imgs = tmp_path / "imgs"
    photo_crops(imgs, 160, seed=21)
    idx = tmp_path / "idx"
    e = Engine.open(idx, model="pixels@16", index_type="IVF4,Flat")
    e.add([imgs], progress=False, workers=0, warn=None)
    t = e.config.search
    assert t["factory"] == e.index.factory and t["reached"] and t["vectors"] == 160 and t["nprobe"] >= 1
    assert e.status().search == t
    e.close()
    on_disk = json.loads((idx / "lookalike.json").read_text())["search"]
    assert on_disk == t
    capsys.readouterr()
    assert cli(["status", "--db", str(idx)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("search"))
    assert f"nprobe {t['nprobe']}" in line and f"recall@10 {t['recall_at_k']:.3f}" in line and "not reached" not in line
    e = Engine.open(idx, create=False)  # knobs applied when the index is read again
    assert faiss.extract_index_ivf(e.index.index).nprobe == t["nprobe"]
    # an HNSW chosen by `auto` that cannot reach the target on this collection is replaced by IVF-Flat
    monkeypatch.setattr(maintainer_mod, "choose_index_type",
                        lambda n, dim, budget=None, allow_hnsw=True: "HNSW32" if allow_hnsw else "IVF4,Flat")
    e.config.recall_target = 1.01  # unreachable by construction
    e.rebuild("auto")
    assert e.config.hnsw_missed_target is True
    assert e.index.factory == "IVF4,Flat" and e.config.search["factory"] == "IVF4,Flat"
    q = sorted(imgs.iterdir())[5]
    assert e.search(q, k=1)[0].path == str(q)
    e.close()
