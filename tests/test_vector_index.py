"""The FAISS wrapper: factory strings, ids, removal (real or hidden), atomic save and damaged files."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.retrieval.index import VectorIndexError, VectorIndex, choose_index_type, needs_training, resolve_factory


def _data(n=3000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.arange(100, 100 + n, dtype=np.int64), x


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF64,Flat",
                                     pytest.param("IVF64,PQ8", marks=pytest.mark.slow)])  # PQ training: ~20 s
def test_search_finds_each_vector_itself(factory):
    ids, x = _data()
    idx = VectorIndex.create(x.shape[1], factory, train_vectors=x if needs_training(factory, 32) else None)
    idx.add(ids, x)
    scores, found = idx.search(x[:50], 5)
    hit = (found[:, 0] == ids[:50]).mean()
    assert hit >= (1.0 if "PQ" not in factory else 0.6), (factory, hit)
    assert len(idx) == len(ids) and set(idx.ids()) == set(ids)


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF64,Flat"])
def test_remove_and_persist(factory, tmp_path):
    ids, x = _data()
    idx = VectorIndex.create(x.shape[1], factory, train_vectors=x if needs_training(factory, 32) else None)
    idx.add(ids, x)
    gone = ids[:10]
    assert idx.remove(gone) == 10
    _, found = idx.search(x[:10], 3)
    assert not np.isin(found, gone).any()
    assert len(idx) == len(ids) - 10
    if factory == "HNSW32":
        assert idx.hidden == set(int(i) for i in gone)  # HNSW cannot delete: hidden instead
    path = tmp_path / "v.faiss"
    idx.save(path)
    back = VectorIndex.load(path)
    assert back.ntotal == idx.ntotal and back.dim == 32
    assert not list(tmp_path.glob("*.tmp"))


def test_damaged_and_missing_files(tmp_path):
    with pytest.raises(VectorIndexError, match="missing"):
        VectorIndex.load(tmp_path / "none.faiss")
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VectorIndexError, match="damaged"):
        VectorIndex.load(bad)
    with pytest.raises(VectorIndexError, match="invalid index type"):
        VectorIndex.create(32, "NoSuchIndex7")


def test_choose_and_resolve():
    assert choose_index_type(1000, 1280) == "Flat"
    assert choose_index_type(200_000, 1280) == "HNSW32"
    assert choose_index_type(2_000_000, 256, max_memory_bytes=200_000_000).startswith("IVF4096,PQ")
    assert resolve_factory("IVF1024,PQ32", 1000) == "IVF16,PQ32"
    assert resolve_factory("IVF1024,Flat", 10**6) == "IVF1024,Flat"
    assert resolve_factory("HNSW32", 10) == "HNSW32"


def test_small_searches_run_on_one_thread_and_restore_the_setting():
    import faiss

    from lookalike.retrieval import index as vi

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = VectorIndex.create(16, "Flat")
    idx.add(np.arange(300, dtype=np.int64), x)
    seen = []
    with vi._threads_for(300):
        seen.append(faiss.omp_get_max_threads())
    with vi._threads_for(vi.ONE_THREAD_PAIRS + 1):
        seen.append(faiss.omp_get_max_threads())
    before = faiss.omp_get_max_threads()
    scores, ids = idx.search(x[:3], 5)
    assert seen[0] == 1 and seen[1] == before and faiss.omp_get_max_threads() == before
    assert ids[:, 0].tolist() == [0, 1, 2]
