"""Index choice under a memory budget, memory-mapped (on-disk) IVF search, switching types without re-embedding."""
from __future__ import annotations

import re

import numpy as np
import pytest

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.photos import photo_crops
from lookalike.retrieval.index import VectorIndexError, choose_index_type, estimate_bytes


@pytest.mark.parametrize("n,dim", [(10_000, 1280), (1_000_000, 256), (1_000_000, 1280), (20_000_000, 256)])
@pytest.mark.parametrize("budget", [None, 8 * 2**30, 1 * 2**30, 200 * 2**20])
def test_auto_choice_fits_the_memory_budget(n, dim, budget):
    t = choose_index_type(n, dim, budget)
    if budget is None:
        assert t == ("Flat" if n < 50_000 else "HNSW32")
        return
    # the candidates from the fastest to the smallest, with the list count the choice used
    nlist = re.match(r"IVF(\d+),", t).group(1) if t.startswith("IVF") else "4096"
    order = [*(["Flat"] if n < 50_000 else []), "HNSW32", f"IVF{nlist},Flat",
             *(f"IVF{nlist},PQ{m}" for m in (64, 32, 16, 8))]
    assert t in order
    if estimate_bytes(t, n, dim) > budget:  # nothing fits: the smallest candidate
        assert estimate_bytes(t, n, dim) == min(estimate_bytes(c, n, dim) for c in order)
        assert all(estimate_bytes(c, n, dim) > budget for c in order)
    else:  # the fastest type that fits: anything faster would not
        assert all(estimate_bytes(f, n, dim) > budget for f in order[: order.index(t)])


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF16,Flat", "IVF16,SQ8", "IVF16,SQ4", "IVF16,PQ8"])
def test_estimate_matches_the_real_index_size(factory):
    """The estimate is the size of a real index holding the vectors (its serialized bytes), SQ4 included."""
    import faiss

    from lookalike.retrieval.index import VectorIndex

    n, dim = 3000, 64
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vi = VectorIndex.create(dim, factory, x)
    assert vi.factory == factory
    vi.index.add_with_ids(x, np.arange(n, dtype=np.int64))
    real = len(faiss.serialize_index(vi.index))
    assert abs(estimate_bytes(factory, n, dim) - real) < 0.03 * real


def test_sq4_is_sized_at_its_code_size_not_as_flat():
    per = (estimate_bytes("IVF1024,SQ4", 2_000_000, 256) - estimate_bytes("IVF1024,SQ4", 1_000_000, 256)) / 1_000_000
    assert per == 256 // 2 + 16  # 4 bits a dimension, plus the ids
    assert estimate_bytes("IVF1024,SQ4", 1_000_000, 256) < estimate_bytes("IVF1024,SQ8", 1_000_000, 256)


def test_budget_moves_the_choice_from_graph_to_compressed():
    assert choose_index_type(1_000_000, 256) == "HNSW32"
    assert choose_index_type(1_000_000, 256, 2 * 2**30) == "HNSW32"
    assert choose_index_type(1_000_000, 256, 1100 * 2**20) == "IVF4096,Flat"
    small = choose_index_type(1_000_000, 256, 256 * 2**20)
    assert "PQ" in small and estimate_bytes(small, 1_000_000, 256) <= 256 * 2**20
    assert choose_index_type(5_000, 1280, 1000) == "Flat"  # too few vectors to train anything compressed


def test_on_disk_ivf_search_then_write_then_switch_back(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    photo_crops(imgs, 120, seed=3)
    idx = tmp_path / "idx"
    assert cli(["index", str(imgs), "--db", str(idx), "--model", "pixels", "-q", "--workers", "0"]) == 0
    ids0, vecs0 = Engine.open(idx, create=False).vectors()
    assert cli(["rebuild", "--db", str(idx), "--index-type", "IVF4,Flat", "--on-disk"]) == 0
    capsys.readouterr()
    e = Engine.open(idx, create=False)
    assert e.index.mmapped and e.index.factory.startswith("IVF") and e.index.factory.endswith(",Flat")
    e.index.set_params(nprobe=4)
    q = sorted(imgs.iterdir())[7]
    assert e.search(q, k=1)[0].path == str(q)
    with pytest.raises(VectorIndexError, match="read-only"):
        e.index.add(np.array([10**9]), vecs0[:1])
    e.close()
    # a writer loads the lists into memory, adds, and writes the file again; searching stays memory-mapped
    photo_crops(tmp_path / "more", 10, seed=4)
    assert cli(["index", str(imgs), str(tmp_path / "more"), "--db", str(idx), "-q", "--workers", "0"]) == 0
    assert "indexed 10," in capsys.readouterr().out
    e = Engine.open(idx, create=False)
    assert e.index.mmapped and len(e.index) == 130
    e.close()
    # switching type again uses the stored vectors only (bit-identical), never re-embeds
    assert cli(["rebuild", "--db", str(idx), "--index-type", "Flat", "--no-on-disk"]) == 0
    e = Engine.open(idx, create=False)
    ids1, vecs1 = e.vectors()
    assert not e.index.mmapped and e.index.factory == "Flat"
    assert np.array_equal(vecs1[np.isin(ids1, ids0)], vecs0)
    e.close()


def test_max_memory_is_remembered_and_used_by_auto(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    photo_crops(imgs, 30, seed=5)
    idx = tmp_path / "idx"
    assert cli(["index", str(imgs), "--db", str(idx), "--model", "pixels", "-q", "--workers", "0", "--max-memory", "1.5G"]) == 0
    e = Engine.open(idx, create=False)
    assert e.config.max_memory == int(1.5 * 2**30) and e.index.factory == "Flat"
    # the remembered budget drives auto's choice as the collection grows (3072-d pixels vectors)
    assert e.maintainer.requested_factory(1_000_000) == choose_index_type(1_000_000, 3072, int(1.5 * 2**30))
    assert "PQ" in e.maintainer.requested_factory(1_000_000) and e.maintainer.requested_factory(100_000) == "HNSW32"
    e.close()
    assert cli(["index", str(imgs), "--db", str(idx), "--max-memory", "lots"]) == 2


@pytest.mark.slow
def test_pq_index_results_are_reranked_with_the_stored_vectors(tmp_path):
    imgs = tmp_path / "imgs"
    photo_crops(imgs, 400, seed=9)
    e = Engine.open(tmp_path / "idx", model="pixels")
    e.add([imgs], progress=False, workers=0)
    q = sorted(imgs.iterdir())[11]
    flat = [(r.id, round(r.score, 5)) for r in e.search(q, k=5)]
    e.rebuild("IVF4,PQ8")  # a coarse code: its own scores are approximate
    assert e.maintainer.refines()
    approx_scores, _ = e.index.search(e.embed([e.load_query(q)[0]]), 5)
    got = [(r.id, round(r.score, 5)) for r in e.search(q, k=5)]
    assert got[0] == flat[0] and got[0][1] > 0.999  # exact scores again: the query finds itself at cosine 1
    assert not np.allclose(approx_scores[0][0], got[0][1], atol=1e-4)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    e.close()
