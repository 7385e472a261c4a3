"""Embedding distributed with Ray Data (a local Ray instance with 2 actors) gives what the single-process path gives.

Skipped where Ray is not installed (pip install 'lookalike[distributed]'; it is not part of the dev extra).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.photos import photo_crops
from helpers import consistent, free_port

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
    photo_crops(imgs, 40, seed=7)
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


@pytest.mark.slow
def test_ray_engine_joins_an_existing_cluster_by_address(tmp_path):
    """`ray start --head` in another process, then `lookalike index --engine ray --address ADDR` joins it."""
    import re
    import shutil
    import subprocess
    import sys

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the `ray` command is not installed")
    port = free_port()
    start = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                            "--disable-usage-stats"], capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        m = re.search(r"ray start --address='([^']+)'", start.stdout + start.stderr)
        assert m, start.stdout[-2000:]
        address = m.group(1)
        imgs = tmp_path / "imgs"
        photo_crops(imgs, 24, seed=8)
        local, remote = tmp_path / "local", tmp_path / "cluster"
        assert cli(["index", str(imgs), "--db", str(local), "--model", "pixels", "-q", "--workers", "0"]) == 0
        run = subprocess.run([sys.executable, "-m", "lookalike", "index", str(imgs), "--db", str(remote), "--model", "pixels",
                              "-q", "--engine", "ray", "--address", address], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "indexed 24," in run.stdout
        a, pa = _contents(local)
        b, pb = _contents(remote)
        assert pa == pb and set(a) == set(b) and all(np.array_equal(a[s], b[s]) for s in a)
        # the cluster is still up after the command: it only disconnected
        status = subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "Active" in status.stdout
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
