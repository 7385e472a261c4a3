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


def _killed_writer(db, n: int) -> None:
    """A process that commits ``n`` images and is SIGKILLed before closing: rows stay in the write-ahead log."""
    import subprocess
    import sys

    code = ("import os, signal, numpy as np\n"
            "from lookalike.indexer.store import MetadataStore, NewImage, sqlite_url\n"
            f"s = MetadataStore(sqlite_url({str(db)!r}), dim=8)\n"
            f"for i in range({n}):\n"
            "    v = np.ones(8, np.float32) / np.sqrt(8)\n"
            "    s.commit_chunk([NewImage(f'{i:064x}', 4, 4, v, [(f'/p/{i}.png', 1, 1)])], [], [])\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], timeout=120)


def test_read_only_open_sees_rows_left_in_the_write_ahead_log(tmp_path):
    db = tmp_path / "m.db"
    _killed_writer(db, 84)
    assert (tmp_path / "m.db-wal").stat().st_size > 0
    ro = MetadataStore(sqlite_url(db), dim=8, read_only=True)
    assert len(ro.image_ids()) == 84 and ro.lookup([84])[84].paths == ["/p/83.png"]
    ro.close()


def test_read_only_open_of_an_unfinished_database_is_one_line(tmp_path):
    db = tmp_path / "m.db"
    sqlite3.connect(db).close()  # created, never written (a writer killed at its first step)
    with pytest.raises(StoreError, match="no tables yet"):
        MetadataStore(sqlite_url(db), dim=8, read_only=True)
