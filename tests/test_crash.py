"""A run killed with SIGKILL mid-way resumes: database and index agree, every good file indexed once."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import PHOTOS, consistent
from lookalike.data.photos import load_photo
from lookalike.indexer.store import count_rows

from lookalike import Engine


def _variants(folder, n=72):
    """n distinct real images: random crops of the scikit-image photos."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    photos = [load_photo(p).convert("RGB") for p in PHOTOS]
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.4, 0.8)), int(h * rng.uniform(0.4, 0.8))
        x, y = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
        im.crop((x, y, x + cw, y + ch)).save(folder / f"v{i:03d}.jpg", quality=90)
    return n


def _count(db) -> int:
    return count_rows(db, "images")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    n = _variants(tmp_path / "imgs")
    idx = tmp_path / "idx"
    cmd = [sys.executable, "-m", "lookalike", "index", str(tmp_path / "imgs"), "--db", str(idx), "-q",
           "--batch-size", "4", "--chunk-size", "8", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        c = _count(idx / "metadata.db")
        if c >= 16:
            proc.send_signal(signal.SIGKILL)
            killed_at = c
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None and killed_at < n, "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL

    # resume: the second run picks up what the first did not commit
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    indexed = int(summary.split("indexed ")[1].split(",")[0])
    unchanged = int(summary.split("unchanged ")[1].split(",")[0])
    assert unchanged >= killed_at and indexed + unchanged == n, summary

    engine = Engine.open(idx)
    consistent(engine)
    st = engine.status()
    assert st.images == st.files == st.vectors == n
    # each image finds itself
    hit = engine.search(tmp_path / "imgs" / "v010.jpg", k=1)[0]
    assert hit.path.endswith("v010.jpg") and hit.score > 0.999
    engine.close()
