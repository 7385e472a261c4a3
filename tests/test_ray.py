"""Embedding distributed with Ray Data (a local Ray instance with 2 actors) gives what the single-process path gives.

Skipped where Ray is not installed (pip install 'lookalike[distributed]'; it is not part of the dev extra).
"""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lookalike import Engine
from lookalike.cli import main as cli
from test_engine import consistent
from test_faults import make_images

pytest.importorskip("ray", reason="Ray not installed (pip install 'lookalike[distributed]')")


def _contents(idx):
    con = sqlite3.connect(idx / "metadata.db")
    rows = {sha: np.frombuffer(v, np.float32) for sha, v in con.execute("select sha256, vector from images")}
    paths = dict(con.execute("select f.path, i.sha256 from files f join images i on i.id = f.image_id"))
    con.close()
    return rows, paths


@pytest.mark.slow
def test_ray_engine_matches_local(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    make_images(imgs, 40, seed=7)
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert cli(["index", str(imgs), "--db", str(local), "--model", "pixels", "-q", "--workers", "0"]) == 0
    capsys.readouterr()
    assert cli(["index", str(imgs), "--db", str(remote), "--model", "pixels", "-q", "--engine", "ray", "--workers", "2",
                "--batch-size", "8", "--chunk-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "indexed 40," in out and "skipped 1" in out, out
    a, pa = _contents(local)
    b, pb = _contents(remote)
    assert pa == pb and set(a) == set(b)
    assert all(np.allclose(a[s], b[s], atol=1e-6) for s in a)
    e = Engine.open(remote, create=False)
    consistent(e)
    q = sorted(imgs.glob("*.jpg"))[4]
    assert e.search(q, k=1)[0].path == str(q)
    e.close()
    # incremental run through Ray: nothing new, nothing embedded
    assert cli(["index", str(imgs), "--db", str(remote), "-q", "--engine", "ray", "--workers", "2"]) == 0
    assert "indexed 0, unchanged 40" in capsys.readouterr().out


def test_address_without_ray_engine_is_refused(tmp_path, capsys):
    assert cli(["index", str(tmp_path), "--db", str(tmp_path / "i"), "--address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err
