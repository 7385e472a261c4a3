"""The FAISS maintainer: re-sync with the store, type changes only on a write, damaged files set aside."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike import Engine, EngineError
from lookalike.indexer.store import MetadataStore, NewImage, sqlite_url
from lookalike.retrieval.folder import IndexConfig, IndexFolder
from lookalike.retrieval.maintainer import IndexMaintainer

DIM = 16


def _setup(tmp_path, n: int = 50, index_type: str = "Flat"):
    folder = IndexFolder(tmp_path / "idx")
    folder.create()
    config = IndexConfig.new({"model": "test", "dim": DIM}, index_type, None)
    store = MetadataStore(sqlite_url(folder.db_path), dim=DIM)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = store.commit_chunk([NewImage(f"{i:064x}", 8, 8, v, [(f"/x/{i}.png", 1, i)]) for i, v in enumerate(vecs)], [], [])
    return folder, config, store, np.asarray(ids), vecs


def test_sync_adds_what_the_store_has_and_drops_what_it_lost(tmp_path):
    folder, config, store, ids, vecs = _setup(tmp_path)
    m = IndexMaintainer(folder, config, store)
    m.load()  # no file yet: built from the store
    assert sorted(m.index.ids().tolist()) == sorted(ids.tolist())
    m.flush()
    assert folder.index_path.exists() and config.index_written and folder.read_config().factory == "Flat"
    gone = store.remove_paths(["/x/3.png", "/x/4.png"])  # another process removed two files
    m2 = IndexMaintainer(folder, config, store)
    m2.load()
    assert set(m2.index.ids().tolist()) == set(ids.tolist()) - set(gone) and m2.dirty
    _, found = m2.index.search(vecs[5], 1)
    assert found[0][0] == ids[5]


def test_flush_writes_nothing_when_unchanged(tmp_path):
    folder, config, store, *_ = _setup(tmp_path)
    m = IndexMaintainer(folder, config, store)
    m.load()
    m.flush()
    mtime = folder.index_path.stat().st_mtime_ns
    m2 = IndexMaintainer(folder, folder.read_config(), store)
    m2.load()
    m2.flush()
    assert folder.index_path.stat().st_mtime_ns == mtime


def test_open_with_another_type_builds_it_only_on_the_next_write(tmp_path, photos):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([photos], progress=False, workers=0, warn=None)
    e.close()
    e = Engine.open(tmp_path / "idx", index_type="HNSW32")
    assert e.index.factory == "Flat"  # opening never rebuilds
    e.close()
    assert IndexFolder(tmp_path / "idx").read_config().index_type == "auto"  # nothing persisted by opening
    e = Engine.open(tmp_path / "idx", index_type="HNSW32")
    e.add([photos], progress=False, workers=0, warn=None)  # the write builds the new type
    assert e.index.factory == "HNSW32"
    e.close()
    cfg = IndexFolder(tmp_path / "idx").read_config()
    assert (cfg.index_type, cfg.factory) == ("HNSW32", "HNSW32")


def test_invalid_index_type_is_refused_before_any_work(tmp_path, photos):
    with pytest.raises(EngineError, match="invalid index type 'garbage'"):
        Engine.open(tmp_path / "idx", model="pixels@16", index_type="garbage")
    assert not (tmp_path / "idx").exists()


def test_damaged_file_is_moved_aside_by_rebuild(tmp_path, photos):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([photos], progress=False, workers=0, warn=None)
    e.close()
    faiss_file = tmp_path / "idx" / "vectors.faiss"
    faiss_file.write_bytes(b"garbage" * 10)
    with pytest.raises(EngineError, match="damaged.*lookalike rebuild"):
        Engine.open(tmp_path / "idx")
    e = Engine.open(tmp_path / "idx", load_index=False)
    done = e.rebuild()
    assert done.damaged == f"{faiss_file}.damaged" and done.vectors == len(list(photos.iterdir()))
    e.close()
    assert (tmp_path / "idx" / "vectors.faiss.damaged").read_bytes() == b"garbage" * 10
    with Engine.open(tmp_path / "idx") as e:
        assert e.status().vectors == done.vectors
