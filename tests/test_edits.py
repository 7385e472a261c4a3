"""Photo edits and noise models (data/edits.py), µAP, and the copy benchmark end to end on a tiny real set."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

from lookalike.bench.common import micro_ap
from lookalike.data.edits import EDITS, NOISES, apply_edit, apply_noise, gaussian_noise, poisson_noise, random_edit
from lookalike.data.photos import load_photo
from lookalike.data.photosets import generated_scene


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    im = load_photo("chelsea").convert("RGB")  # 451x300
    return im


@pytest.mark.parametrize("name", list(EDITS))
def test_each_edit_is_seeded_and_strength_matters(photo, name):
    a, b = apply_edit(photo, name, "mild", seed=3), apply_edit(photo, name, "mild", seed=3)
    assert a.mode == "RGB" and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
    strong = apply_edit(photo, name, "strong", seed=3)
    assert a.size != strong.size or not np.array_equal(np.asarray(a), np.asarray(strong))
    assert a.size != photo.size or not np.array_equal(np.asarray(a), np.asarray(photo))


def test_edits_do_what_they_say(photo):
    w, h = photo.size
    assert apply_edit(photo, "crop", "strong").size == (int(w * 0.4), int(h * 0.4))
    assert apply_edit(photo, "rotate", "strong").size == (h, w)  # a quarter turn
    assert np.array_equal(np.asarray(apply_edit(photo, "mirror", "mild")), np.asarray(photo)[:, ::-1])
    g = np.asarray(apply_edit(photo, "greyscale", "strong")).astype(int)
    assert np.abs(g - g.mean(axis=2, keepdims=True)).max() <= 1
    assert max(apply_edit(photo, "thumbnail", "strong").size) == 64
    lb = apply_edit(photo, "letterbox", "mild")
    assert lb.width == w and lb.height > h and np.asarray(lb)[0].max() == 0  # black bar on top
    blurred = np.asarray(apply_edit(photo, "blur", "strong"), dtype=float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.5 * np.abs(np.diff(np.asarray(photo, dtype=float), axis=1)).mean()
    with pytest.raises(ValueError):
        apply_edit(photo, "sepia")
    with pytest.raises(ValueError):
        apply_edit(photo, "crop", "medium")


def test_noise_models_have_the_stated_levels():
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    rng = np.random.default_rng(0)
    a = np.asarray(gaussian_noise(grey, 0.1, rng), dtype=float) / 255.0
    assert a.std() == pytest.approx(0.1, abs=0.005) and a.mean() == pytest.approx(128 / 255, abs=0.005)
    clipped = np.asarray(gaussian_noise(grey, 1.0, rng), dtype=float) / 255.0
    assert clipped.min() == 0.0 and clipped.max() == 1.0 and clipped.std() < 1.0  # clipped to the 8-bit range
    p = np.asarray(poisson_noise(grey, 20.0, rng), dtype=float) / 255.0
    # shot noise: variance = mean / peak on the 0..1 scale
    assert p.mean() == pytest.approx(128 / 255, abs=0.01) and p.var() == pytest.approx((128 / 255) / 20, rel=0.1)
    for name in NOISES:
        assert np.array_equal(np.asarray(apply_noise(grey, name, seed=1)), np.asarray(apply_noise(grey, name, seed=1)))
    assert not np.array_equal(np.asarray(apply_noise(grey, "gauss-0.1", 1)), np.asarray(apply_noise(grey, "gauss-0.1", 2)))


def test_random_edit_is_a_seeded_training_view(photo):
    a = random_edit(photo, np.random.default_rng(5))
    b = random_edit(photo, np.random.default_rng(5))
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))


def test_micro_ap_ranks_all_pairs_together():
    # two queries, one original each: query 1's original ranks first globally, query 2's third of four pairs
    scores = np.array([0.9, 0.5, 0.8, 0.7])
    positive = np.array([True, False, False, True])
    assert micro_ap(scores, positive, 2) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert micro_ap(scores, positive, 4) == pytest.approx((1 / 1 + 2 / 3) / 4)  # two originals never returned
    assert micro_ap(scores, np.zeros(4, bool), 2) == 0.0


@pytest.mark.slow
def test_copy_benchmark_finds_originals_on_a_tiny_real_set(tmp_path):
    from lookalike.bench.copies import format_table, run_copies

    photos = [(n, load_photo(n).convert("RGB")) for n in ("astronaut", "chelsea", "coffee")]
    rng = np.random.default_rng(0)
    distractors = [(f"scene-{i}", generated_scene(rng)) for i in range(12)] + [("rocket", load_photo("rocket"))]
    res = run_copies(photos, distractors, tmp_path, ["efficientnet_lite0"], "test", edits=["mirror", "jpeg", "caption"],
                     strengths=("mild",), k=5, peer=False, progress=False)
    m = res["methods"]["efficientnet_lite0"]
    assert res["n_gallery"] == 16 and res["n_queries"] == 9 and m["n"] == 9
    assert m["top1"] == 1.0 and m["muap"] > 0.9
    assert set(m["per_group"]) == {"mirror", "jpeg", "caption"}
    assert all(q["top1"]["efficientnet_lite0"] == q["photo"] for q in res["queries"])
    assert "overall" in format_table(res)



@pytest.mark.slow
def test_copy_levers_score_rotations_and_thumbnails_like_the_original(tmp_path):
    """The quarter-turn gallery views meet a 90-degree copy, --multi-scale a 120 px thumbnail and the crop views a
    top-left quarter, at about the score of the original itself (plain search: 0.73-0.94 here); every lever answers
    every query."""
    from benchmarks.levers import Levers, run_levers
    from lookalike.bench.common import build_gallery, open_index
    from lookalike.retrieval.models import DEFAULT_EMBEDDER

    photos = [(n, load_photo(n).convert("RGB")) for n in ("astronaut", "chelsea", "coffee")]
    rng = np.random.default_rng(1)
    gallery = build_gallery(tmp_path / "g", photos, [(f"scene-{i}", generated_scene(rng)) for i in range(8)])
    queries = [im.rotate(90, expand=True) for _, im in photos] + [
        im.resize((120, round(120 * im.height / im.width))) for _, im in photos] + [
        im.crop((0, 0, round(im.width / 2), round(im.height / 2))) for _, im in photos]
    targets = [n for n, _ in photos] * 3
    levers = Levers(low_detail=True, rot=True, query_views="rot", multi_scale=True, crops=True)
    with open_index(tmp_path / "idx", gallery, DEFAULT_EMBEDDER, progress=False) as engine:
        plain = np.array([engine.search(q, k=1)[0].score for q in queries])
        out = run_levers(engine, gallery, tmp_path, DEFAULT_EMBEDDER, levers, queries, targets, k=5, progress=False)
    assert set(out) == set(levers.names())
    assert {"+lowdetail+rot+ms+views:mirror", "+views:rot", "+lowdetail+crops+views:rot"} <= set(out)
    assert all(m.ranks == [1] * 9 and len(m.ms) == 9 for m in out.values())
    top = {n: np.asarray(m.pair_scores).reshape(9, 5)[:, 0] for n, m in out.items()}
    assert (top["+rot"][:3] > 0.99).all() and (plain[:3] < 0.95).all()
    assert (top["+lowdetail+ms"][3:6] > 0.99).all() and (plain[3:6] < 0.97).all()
    assert (top["+crops"][6:] > 0.98).all() and (top["+crops"][6:] - plain[6:] > 0.05).all(), (top["+crops"][6:], plain[6:])
    assert (top["+lowdetail+rot+ms+views:rot"] >= np.maximum(top["+rot"], top["+lowdetail+ms"]) - 1e-6).all()  # max


def test_copy_benchmark_keeps_the_engine_and_the_lever_query_views_apart(tmp_path):
    from benchmarks.levers import Levers
    from lookalike.bench.copies import run_copies

    photos = [(n, load_photo(n).convert("RGB")) for n in ("astronaut", "coffee")]
    distractors = [(f"scene-{i}", generated_scene(np.random.default_rng(i))) for i in range(4)]
    res = run_copies(photos, distractors, tmp_path, ["pixels@16"], "test", edits=["mirror"], strengths=("mild",), k=5,
                     views="mirror", peer=False, progress=False, extra=Levers(query_views="mirror"))
    assert set(res["methods"]) == {"pixels@16", "pixels@16 +views:mirror (Engine)", "pixels@16 +views:mirror",
                                   "pixels@16 lowfreq-off", "pixels@16 +views:mirror (Engine) lowfreq-off",
                                   "pixels@16 +views:none", "pixels@16 +views:none lowfreq-off"}  # default: auto
    engine, lever = res["methods"]["pixels@16 +views:mirror (Engine)"], res["methods"]["pixels@16 +views:mirror"]
    assert engine["top1"] == lever["top1"] == 1.0 and engine["n"] == lever["n"] == 2
    assert res["machine"]["cpu_count"] == os.cpu_count() and len(res["machine"]["load_avg"]) == 3  # not a fixed text


def test_the_shipped_bench_installs_no_peer(monkeypatch, tmp_path, capsys):
    """`lookalike bench` uses imagededup only where it is installed or configured, and says so in one line."""
    import importlib.util

    from lookalike.bench import common

    monkeypatch.setenv("LOOKALIKE_BENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_IMAGEDEDUP_PYTHON", str(tmp_path / "no-such-python"))
    res, status = common.run_peer([], [], 5)
    assert res is None and "cannot import imagededup" in status
    assert capsys.readouterr().err.strip().count("\n") == 0
    monkeypatch.delenv("LOOKALIKE_IMAGEDEDUP_PYTHON")
    py, status = common.peer_python()
    if importlib.util.find_spec("imagededup") is None:
        assert py is None and "not installed" in status
    else:
        assert py == sys.executable
    assert not any(tmp_path.iterdir())  # no venv made
