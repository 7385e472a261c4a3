"""`lookalike adapt`: the index's projection head fine-tuned on its own images, every image re-embedded, search on
the new head; resumable after SIGKILL, safe at a kill between the store and the config, refused for other models.

A small head (efficientnet_lite0 at 64 px, 64-d) and generated scenes keep it fast; real SQLite and FAISS."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, consistent
from lookalike import Engine
from lookalike.cli import main
from lookalike.data.photosets import generated_scene
from lookalike.training.adapt import AdaptConfig, adapt_index

pytestmark = pytest.mark.slow  # fine-tunes heads, kills and resumes

N_IMAGES = 24
SMALL = AdaptConfig(images=16, views=2, epochs=3, chunk=4)


def stored(db: Path) -> dict[int, np.ndarray]:
    con = sqlite3.connect(db / "metadata.db")
    rows = con.execute("select id, vector from images order by id").fetchall()
    con.close()
    return {i: np.frombuffer(v, np.float32) for i, v in rows}


@pytest.fixture(scope="module")
def base_index(tmp_path_factory, one_torch_thread) -> Path:
    """A projection-head checkpoint (random head on the frozen backbone) and an index of generated scenes built with it."""
    import torch

    from lookalike.retrieval.nets import HeadEmbedder, save_embedder

    root = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    head = save_embedder(root / "head.pt", HeadEmbedder(["efficientnet_lite0"], 64, hidden=64, out_dim=32,
                                                        output="hidden", name="tiny-head"))
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(N_IMAGES):
        generated_scene(rng, (int(rng.integers(96, 200)), int(rng.integers(80, 160)))).save(root / "images" / f"s{i:02d}.png")
    with Engine.open(root / "db", model=f"checkpoint:{head}", runtime="torch") as eng:
        eng.add([root / "images"], progress=False, workers=0, warn=None)
    return root


@pytest.fixture
def index(base_index, tmp_path) -> Path:
    """A private copy of the index (the head file stays where the index's config names it)."""
    return Path(shutil.copytree(base_index / "db", tmp_path / "db"))


def test_adapt_changes_vectors_and_search_uses_the_adapted_head(index, base_index):
    query = base_index / "images" / "s05.png"
    with Engine.open(index, runtime="torch") as eng:
        before_hits = eng.search(query, k=5)
    old = stored(index)
    report = adapt_index(index, SMALL, progress=False)
    new = stored(index)
    assert report.images == N_IMAGES and report.sampled == 16 and report.clean_computed == N_IMAGES
    assert old.keys() == new.keys()
    assert not np.allclose(np.stack(list(old.values())), np.stack(list(new.values())), atol=1e-3)
    cfg = json.loads((index / "lookalike.json").read_text())
    head = index / cfg["adapted"]["file"]
    assert head.is_file() and cfg["model"] == f"checkpoint:{head.name}" and cfg["dim"] == 64  # relative: copyable
    assert cfg["adapted"]["base"] == f"checkpoint:{base_index / 'head.pt'}"
    with Engine.open(index, runtime="torch") as eng:
        consistent(eng)
        hits = eng.search(query, k=5)
        assert len(hits) == len(before_hits) == 5
        assert Path(hits[0].path) == query and hits[0].score > 0.999
        # the query is embedded with the adapted head: an unindexed copy scores like the stored vector
        from PIL import Image

        v = eng.embed([Image.open(query).convert("RGB")])[0]
        assert float(v @ new[eng.store.id_for_path(str(query))]) > 0.999
    # --model with the base name still opens the adapted index (e.g. `lookalike index DIR --db D --model ...`)
    with Engine.open(index, model=cfg["adapted"]["base"], runtime="torch") as eng:
        assert eng.model_name == f"checkpoint:{head}"
    # a moved index folder finds its head in its new place
    moved = Path(shutil.move(index, index.with_name("moved")))
    with Engine.open(moved, runtime="torch") as eng:
        assert eng.model_name == f"checkpoint:{moved / head.name}"
        assert eng.status().model == f"checkpoint:{head.name}"  # its own head, not the folder it was adapted in
        hits = eng.search(query, k=5)
        assert Path(hits[0].path) == query and hits[0].score > 0.999


def test_a_kill_between_the_store_and_the_config_is_finished_on_open(index, base_index):
    config_before = (index / "lookalike.json").read_bytes()
    faiss_before = (index / "vectors.faiss").read_bytes()
    adapt_index(index, SMALL, progress=False)
    new = stored(index)
    # the state a kill after the vectors' transaction leaves: old config and FAISS file, new vectors in the store
    (index / "lookalike.json").write_bytes(config_before)
    (index / "vectors.faiss").write_bytes(faiss_before)
    query = base_index / "images" / "s07.png"
    with Engine.open(index, runtime="torch") as eng:
        assert eng.config.model.startswith("checkpoint:adapted-head-")
        consistent(eng)
        hits = eng.search(query, k=3)
        assert Path(hits[0].path) == query and hits[0].score > 0.999
        from PIL import Image

        v = eng.embed([Image.open(query).convert("RGB")])[0]
        assert float(v @ new[eng.store.id_for_path(str(query))]) > 0.999
        for iid, vec in new.items():  # FAISS was rebuilt from the store: it holds the new vectors
            scores, ids = eng.index.search(vec, 1)
            assert ids[0][0] == iid and scores[0][0] > 0.999
    assert json.loads((index / "lookalike.json").read_text())["adapted"]["file"] in eng.config.model
    assert stored(index).keys() == new.keys()


def _adapt_cli(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lookalike", "adapt", "--db", str(db), "--images", "16", "--views", "2",
            "--epochs", "3", "--chunk-size", "1", "--json", "-q", *extra]


def test_adapt_resumes_after_sigkill(index, base_index):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}
    config_before = (index / "lookalike.json").read_text()
    old = stored(index)
    proc = subprocess.Popen(_adapt_cli(index), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = index / "adapt"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(cache.glob("*/clean-*.npz"))) >= 2:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    saved = len(list(cache.glob("*/clean-*.npz")))
    assert saved >= 2 and proc.returncode == -signal.SIGKILL
    # killed before the switch: the index is the one it was, whole
    assert (index / "lookalike.json").read_text() == config_before and not list(index.glob("adapted-head-*.pt"))
    assert all(np.array_equal(old[i], v) for i, v in stored(index).items())
    done = subprocess.run(_adapt_cli(index), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["clean_reused"] >= saved and report["clean_computed"] == N_IMAGES - report["clean_reused"]
    with Engine.open(index, runtime="torch") as eng:
        consistent(eng)
        query = base_index / "images" / "s03.png"
        hits = eng.search(query, k=3)
        assert Path(hits[0].path) == query and hits[0].score > 0.999
        assert eng.config.model == f"checkpoint:{report['head']}"


def test_adapt_refuses_an_index_of_another_model(tmp_path, base_index, capsys):
    db = tmp_path / "pixels"
    with Engine.open(db, model="pixels") as eng:
        eng.add([base_index / "images"], progress=False, workers=0, warn=None)
    before = stored(db)
    assert main(["adapt", "--db", str(db), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a projection head" in err and "pixels" in err and "Traceback" not in err
    assert all(np.array_equal(before[i], v) for i, v in stored(db).items())
    assert main(["adapt", "--db", str(tmp_path / "nothing-here"), "-q"]) == 2
    assert "not a lookalike index" in capsys.readouterr().err


def test_copy_benchmark_scores_the_index_before_and_after_adapting(base_index, tmp_path):
    from PIL import Image

    from lookalike.bench.copies import format_table, run_copies

    scenes = sorted((base_index / "images").glob("*.png"))
    photos = [(p.stem, Image.open(p).convert("RGB")) for p in scenes[:3]]
    distractors = [(p.stem, Image.open(p).convert("RGB")) for p in scenes[3:12]]
    model = f"checkpoint:{base_index / 'head.pt'}"
    res = run_copies(photos, distractors, tmp_path, [model], "test", edits=["mirror", "jpeg"], strengths=("mild",),
                     k=5, peer=False, progress=False, adapt=SMALL)
    assert set(res["methods"]) == {f"{model}{a}{v}{lf}" for a in ("", " +adapt") for v in ("", " +views:none")
                                   for lf in ("", " lowfreq-off")}
    assert all(m["n"] == 6 for m in res["methods"].values())
    report = res["adapt"][model]
    assert report["images"] == 12 and report["sampled"] == 12 and report["views"] == SMALL.views
    adapted = Path(report["index"])
    assert adapted.name.endswith("-adapted") and (adapted / report["head"]).is_file()
    # the plain gallery index is left as it was: the adapted one is a copy
    plain = json.loads((adapted.with_name(adapted.name.removesuffix("-adapted")) / "lookalike.json").read_text())
    assert plain["model"] == model and "adapted" not in plain
    assert "+adapt" in format_table(res)


def test_a_bf16_index_is_adapted_into_an_fp32_one(base_index, tmp_path):
    from lookalike.retrieval.runtime import bf16_available

    if not bf16_available():
        pytest.skip("this CPU has no bf16 in OpenVINO")
    db = tmp_path / "bf16"
    with Engine.open(db, model=f"checkpoint:{base_index / 'head.pt'}", precision="bf16") as eng:
        eng.add([base_index / "images"], progress=False, workers=0, warn=None)
        assert eng.config.precision == "bf16"
    adapt_index(db, SMALL, progress=False)
    assert json.loads((db / "lookalike.json").read_text())["precision"] == "fp32"  # re-embedded in fp32
    with Engine.open(db) as eng:
        consistent(eng)
        assert eng.search(base_index / "images" / "s07.png", k=1)[0].path.endswith("s07.png")
