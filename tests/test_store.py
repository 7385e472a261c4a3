"""The metadata store: typed rows, and the schema version checked on open."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lookalike.indexer.store import (SCHEMA_VERSION, FileState, ImageInfo, MetadataStore, NewImage, SkippedState,
                                     StoreError, sqlite_url)


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return v / np.linalg.norm(v)


def test_rows_are_typed(tmp_path):
    s = MetadataStore(sqlite_url(tmp_path / "m.db"), dim=8)
    ids = s.commit_chunk([NewImage("a" * 64, 30, 20, _vec(0), [("/p/b.png", 10, 5), ("/p/a.png", 10, 6)])],
                         [], [("/p/bad.png", "not an image", 3, 4)])
    info = s.lookup(ids)[ids[0]]
    assert isinstance(info, ImageInfo) and info.paths == ["/p/a.png", "/p/b.png"] and (info.width, info.height) == (30, 20)
    st = s.file_states(under=["/p"])["/p/a.png"]
    assert isinstance(st, FileState) and st == FileState(10, 6, ids[0])
    assert s.file_states(under=["/other"]) == {}
    sk = s.skipped_states()["/p/bad.png"]
    assert isinstance(sk, SkippedState) and sk.reason == "not an image"
    s.close()


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "m.db"
    MetadataStore(sqlite_url(db), dim=8).close()
    con = sqlite3.connect(db)
    con.execute("update meta set value=? where key='schema_version'", (str(int(SCHEMA_VERSION) + 1),))
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="newer than this lookalike reads"):
        MetadataStore(sqlite_url(db), dim=8)
    assert db.read_bytes() == before
