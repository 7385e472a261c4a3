"""The searcher: query loading from every input type, exact re-ranking, results without deleted rows."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike import Engine, EngineError
from lookalike.retrieval.searcher import load_query


def test_load_query_accepts_path_bytes_array_and_pil(photos):
    p = photos / "coffee.png"
    by_path, sha_path = load_query(p)
    by_bytes, sha_bytes = load_query(p.read_bytes())
    by_array, sha_array = load_query(np.asarray(Image.open(p)))
    by_float, _ = load_query(np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0)
    assert sha_path == sha_bytes and sha_array is None
    ref = np.asarray(by_path)
    for im in (by_bytes, by_array, by_float):
        assert im.mode == "RGB" and np.abs(np.asarray(im).astype(int) - ref).max() <= 1


def test_load_query_errors_are_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(EngineError, match="bad.png: not an image"):
        load_query(tmp_path / "bad.png")
    with pytest.raises(EngineError, match="^query: "):
        load_query(b"\x89PNG\r\n\x1a\n truncated")


def test_neighbours_skip_rows_deleted_since_the_index_was_read(tmp_path, photos):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([photos], progress=False, workers=0, warn=None)
    q = e.embed([load_query(photos / "rocket.png")[0]])[0]
    first = e.searcher.neighbours(q, 3)
    assert first[0].path == str(photos / "rocket.png") and first[0].score > 0.999
    e.store.remove_paths([first[0].path])  # the FAISS index in memory still has it
    after = e.searcher.neighbours(q, 3)
    assert [r.id for r in after] == [r.id for r in first[1:3]] and [r.rank for r in after] == [1, 2]
    e.close()


def test_rerank_orders_by_exact_stored_scores(tmp_path, photos):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([photos], progress=False, workers=0, warn=None)
    ids, vecs = e.vectors()
    q = vecs[2]
    shuffled = [(0.0, int(i)) for i in ids[::-1]]
    got = e.searcher.rerank(shuffled, q, 3)
    exact = sorted(zip((vecs @ q).tolist(), ids.tolist()), key=lambda p: -p[0])[:3]
    assert [i for _, i in got] == [i for _, i in exact] and got[0][1] == ids[2]
    e.close()
