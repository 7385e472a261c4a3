"""Faults and concurrency: SIGKILL + resume equals a clean run, searches during indexing, a damaged or missing
database reported and left untouched, a read-only folder and a full disk give one-line errors and lose nothing.

The long version (20 random kills, a searcher process, a catalogue of bad inputs) is benchmarks/stress.py.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lookalike.indexer.store import count_rows
from helpers import consistent, read_only

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.photos import photo_crops

pytestmark = pytest.mark.slow  # kills and resumes indexing processes

MODEL = "pixels"  # fast, deterministic: the same file always gets bit-identical vectors


def snapshot(idx: Path) -> dict:
    """What an index holds: path -> sha256, sha256 -> vector bytes, plus the invariants checked."""
    e = Engine.open(idx, create=False)
    try:
        consistent(e)
        con = sqlite3.connect(idx / "metadata.db")
        paths = dict(con.execute("select f.path, i.sha256 from files f join images i on i.id = f.image_id"))
        vecs = dict(con.execute("select sha256, vector from images"))
        con.close()
        assert e.index.ntotal == len(vecs)
    finally:
        e.close()
    assert not list(idx.glob(".*.tmp")), "temp files left behind"
    return {"paths": paths, "vectors": vecs}


def index_cmd(imgs: Path, idx: Path) -> list[str]:
    return [sys.executable, "-m", "lookalike", "index", str(imgs), "--db", str(idx), "--model", MODEL, "-q",
            "--batch-size", "4", "--chunk-size", "8", "--workers", "0"]


def db_count(db) -> int:
    return count_rows(db, "images")


def file_sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    photo_crops(d / "imgs", 240)
    clean = d / "clean"  # the reference, built in this process (same command, same settings)
    assert cli(index_cmd(d / "imgs", clean)[3:]) == 0
    return d / "imgs", clean


def test_three_kills_then_resume_match_a_clean_run(collection, tmp_path):
    imgs, clean = collection
    idx = tmp_path / "idx"
    n = len(list(imgs.iterdir()))
    kills = []
    for threshold in (40, 110, 180):  # images committed when the kill lands
        proc = subprocess.Popen(index_cmd(imgs, idx), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and db_count(idx / "metadata.db") < threshold:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"run ended ({proc.returncode}) before the kill at {threshold}"
        kills.append(db_count(idx / "metadata.db"))
    assert kills[0] < n and kills == sorted(kills)
    done = subprocess.run(index_cmd(imgs, idx), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = snapshot(idx), snapshot(clean)
    assert got["paths"] == want["paths"]          # same files -> same content, nothing missing or extra
    assert got["vectors"] == want["vectors"]      # same sha256 set, bit-identical vectors, no duplicates


def test_searches_during_indexing_see_consistent_snapshots(collection, tmp_path):
    imgs, _ = collection
    idx = tmp_path / "idx"
    proc = subprocess.Popen(index_cmd(imgs, idx), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    served = during = reopened = 0
    rng = np.random.default_rng(0)
    queries = sorted(imgs.iterdir())
    try:
        while proc.poll() is None or served == 0:
            if db_count(idx / "metadata.db") == 0 or not (idx / "lookalike.json").exists():
                time.sleep(0.01)
                continue
            e = Engine.open(idx, create=False)  # a fresh snapshot each round
            reopened += 1
            try:
                for _ in range(5):
                    q = rng.standard_normal(e.dim).astype(np.float32)
                    _, ids = e.index.search(q / np.linalg.norm(q), 10)
                    ids = [int(i) for i in ids[0] if i >= 0]
                    rows = e.store.lookup(ids)
                    assert set(ids) <= set(rows), f"vector without its row: {set(ids) - set(rows)}"
                    assert all(rows[i].paths for i in ids), "row without a file"
                    res = e.search(queries[int(rng.integers(len(queries)))], k=3)
                    assert all(Path(r.path).exists() for r in res)
                    served += 1
                    during += proc.poll() is None
            finally:
                e.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert during > 0, "no search ran while the indexer was running"
    snapshot(idx)


@pytest.fixture
def small_index(collection, tmp_path):
    imgs, _ = collection
    part = tmp_path / "part"
    part.mkdir()
    for p in sorted(imgs.iterdir())[:20]:
        shutil.copy(p, part / p.name)
    idx = tmp_path / "idx"
    assert cli(["index", str(part), "--db", str(idx), "--model", MODEL, "-q", "--workers", "0"]) == 0
    return part, idx


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lookalike: "), err
    assert any(n in last for n in needles), last
    return last


@pytest.mark.parametrize("damage", ["pages", "header", "empty", "missing"])
def test_damaged_database_is_reported_and_left_untouched(small_index, capsys, damage):
    part, idx = small_index
    db = idx / "metadata.db"
    capsys.readouterr()
    if damage == "pages":
        data = bytearray(db.read_bytes())
        data[4096 : 4096 * 4] = np.random.default_rng(1).integers(0, 256, 4096 * 3, dtype=np.uint8).tobytes()
        db.write_bytes(bytes(data))
    elif damage == "header":
        with open(db, "r+b") as fh:
            fh.write(b"this is not a database at all!!")
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    before = file_sha(db) if db.exists() else None
    q = str(next(part.iterdir()))
    assert cli(["search", q, "--db", str(idx)]) == 2
    _one_line_error(capsys, "corrupted", "missing", "empty")
    assert cli(["index", str(part), "--db", str(idx), "-q", "--workers", "0"]) == 2
    _one_line_error(capsys, "corrupted", "missing", "empty")
    assert (file_sha(db) if db.exists() else None) == before, "the damaged database was modified"
    wal = idx / "metadata.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "something was written to the damaged database's journal"
    if before is None:
        assert not db.exists(), "a missing database was silently re-created"


def test_read_only_index_folder(small_index, collection, capsys):
    part, idx = small_index
    imgs, _ = collection
    before = snapshot(idx)
    capsys.readouterr()
    with read_only(idx) as ro:
        assert cli(["index", str(imgs), "--db", str(ro), "-q", "--workers", "0"]) == 2
        _one_line_error(capsys, "Read-only file system", "Permission denied")
        assert cli(["remove", str(part), "--db", str(ro)]) == 2
        _one_line_error(capsys, "Read-only file system", "Permission denied")
        # reading still works
        q = sorted(part.iterdir())[3]
        assert cli(["search", str(q), "--db", str(ro), "-k", "1"]) == 0
        assert str(q) in capsys.readouterr().out
    assert snapshot(idx) == before


@contextlib.contextmanager
def small_disk(parent: Path, size: str = "24m"):
    """A tiny tmpfs (root only); yields None where it cannot be mounted."""
    mnt = parent / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(folder: Path, leave: int) -> Path:
    st = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_disk_full_gives_one_line_error_and_keeps_committed_data(collection, tmp_path, capsys):
    imgs, _ = collection
    first = tmp_path / "first"
    first.mkdir()
    for p in sorted(imgs.iterdir())[:20]:
        shutil.copy(p, first / p.name)
    with small_disk(tmp_path) as disk:
        if disk is not None:  # a real ENOSPC: a 24 MB tmpfs, filled up to 64 KB
            idx = disk / "idx"
            assert cli(["index", str(first), "--db", str(idx), "--model", MODEL, "-q", "--workers", "0"]) == 0
            before = snapshot(idx)
            filler = _fill(disk, 64 * 1024)
            capsys.readouterr()
            assert cli(["index", str(imgs), "--db", str(idx), "-q", "--workers", "0", "--chunk-size", "8"]) == 2
            _one_line_error(capsys, "No space left on device", "disk is full")
            filler.unlink()
        else:  # not root: the same failure path through RLIMIT_FSIZE (writes fail with EFBIG, not ENOSPC)
            idx = tmp_path / "idx"
            assert cli(["index", str(first), "--db", str(idx), "--model", MODEL, "-q", "--workers", "0"]) == 0
            before = snapshot(idx)
            limit = max(f.stat().st_size for f in idx.iterdir()) + 64 * 1024

            def cap():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            r = subprocess.run(index_cmd(imgs, idx), capture_output=True, text=True, preexec_fn=cap, timeout=600)
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
            assert r.stderr.strip().splitlines()[-1].startswith("lookalike: ")
        after = snapshot(idx)  # committed data intact and consistent (later chunks may have made it too)
        assert set(before["vectors"]).issubset(after["vectors"])
        assert all(after["paths"][p] == s for p, s in before["paths"].items() if p in after["paths"])
        # once there is room again the run completes
        assert cli(["index", str(imgs), "--db", str(idx), "-q", "--workers", "0"]) == 0
        assert len(snapshot(idx)["paths"]) == len(list(imgs.iterdir())) + len(before["paths"])
