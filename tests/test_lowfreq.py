"""The low-frequency channel: signatures stored at index time (schema 3), filled in for older indexes, and fused
into the search of noisy photos by ``--denoise auto``."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

from lookalike import Engine, EngineError
from lookalike.data.edits import apply_noise
from lookalike.data.photos import load_photo
from lookalike.data.photosets import generated_scene
from lookalike.indexer.signature import SIGNATURE_DIM, lowfreq_signature
from lookalike.indexer.store import SCHEMA_VERSION, MetadataStore, sqlite_url

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "clock"]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """8 real photos (JPEG, about 0.1 MP) among 24 generated scenes."""
    d = tmp_path_factory.mktemp("lowfreq-gallery")
    for n in PHOTOS:
        load_photo(n).convert("RGB").resize((384, 288), Image.LANCZOS).save(d / f"{n}.jpg", quality=92)
    rng = np.random.default_rng(3)
    for i in range(24):
        generated_scene(rng, (320, 240)).save(d / f"scene-{i}.jpg", quality=92)
    return d


@pytest.fixture(scope="module")
def engine(gallery, tmp_path_factory, one_torch_thread):
    e = Engine.open(tmp_path_factory.mktemp("lowfreq-idx") / "idx")  # the default embedder
    e.add([gallery], progress=False, workers=0)
    yield e
    e.close()


def test_signature_is_the_low_dct_block_and_survives_noise():
    from scipy.fft import dctn

    im = load_photo("chelsea").convert("RGB")
    sig = lowfreq_signature(im)
    g = np.asarray(im.convert("L").resize((32, 32), Image.BOX), np.float64)
    ref = dctn(g, norm="ortho")[:8, :8].ravel()[1:]
    assert sig.shape == (SIGNATURE_DIM,) and np.allclose(sig, ref / np.linalg.norm(ref), atol=1e-5)
    noisy = lowfreq_signature(apply_noise(im, "gauss-1.0", seed=0))
    others = [lowfreq_signature(load_photo(n).convert("RGB")) for n in PHOTOS if n != "chelsea"]
    assert float(noisy @ sig) > max(float(noisy @ o) for o in others)


def test_index_stores_a_signature_per_image(engine, gallery):
    ids, mat = engine.store.signatures()
    assert len(ids) == engine.status().images == 32 and mat.shape == (32, SIGNATURE_DIM)
    by_path = {engine.image(int(i)).paths[0]: row for i, row in zip(ids, mat)}
    with Image.open(gallery / "coffee.jpg") as im:
        assert np.allclose(by_path[str(gallery / "coffee.jpg")], lowfreq_signature(im), atol=2e-3)  # float16


def test_auto_is_never_worse_than_no_denoising_on_noisy_photos(engine):
    found = {"none": {}, "auto": {}}
    for level in ("gauss-0.25", "gauss-0.5", "gauss-1.0", "poisson-5"):
        for mode in found:
            found[mode][level] = 0
        for i, n in enumerate(PHOTOS):
            q = apply_noise(load_photo(n).convert("RGB").resize((384, 288), Image.LANCZOS), level, seed=i)
            plain = engine.search(q, k=1)
            auto = engine.search(q, k=1, denoise="auto")
            found["none"][level] += plain[0].path.endswith(f"{n}.jpg")
            found["auto"][level] += auto[0].path.endswith(f"{n}.jpg")
            assert -1.0 <= auto[0].score <= 1.0
    assert all(found["auto"][lv] >= found["none"][lv] for lv in found["none"]), found
    assert found["auto"]["gauss-1.0"] >= len(PHOTOS) - 1, found  # the plain embedding loses most of these


def test_clean_and_edited_photos_are_searched_without_fusion(engine):
    im = load_photo("rocket").convert("RGB").resize((384, 288), Image.LANCZOS)
    res = engine.search(im.transpose(Image.FLIP_LEFT_RIGHT), k=3, denoise="auto")
    assert res.denoise.method == "none" and res.lowfreq_weight == 0 and res[0].path.endswith("rocket.jpg")


def test_fused_search_honours_k_and_exclude_self(engine, gallery):
    res = engine.search(gallery / "moon.jpg", k=4, denoise="auto", sigma=0.8, exclude_self=True)
    assert res.lowfreq_weight > 0 and len(res) == 4
    assert all(not r.path.endswith("moon.jpg") for r in res)
    assert [r.rank for r in res] == [1, 2, 3, 4] and all(a.score >= b.score for a, b in zip(res, res[1:]))


def test_an_index_from_before_signatures_is_migrated_and_filled(gallery, tmp_path):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([gallery], progress=False, workers=0)
    e.close()
    db = tmp_path / "idx" / "metadata.db"
    con = sqlite3.connect(db)  # what a schema-2 lookalike wrote: no signature column
    con.execute("ALTER TABLE images DROP COLUMN lowfreq")
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.close()
    ro = MetadataStore(sqlite_url(db), read_only=True)
    assert ro.schema == "2" and len(ro.signatures()[0]) == 0 and len(ro.image_ids()) == 32
    ro.close()
    e = Engine.open(tmp_path / "idx")  # read-write: migrated, signatures still missing
    assert e.store.schema == SCHEMA_VERSION and len(e.store.missing_signatures()) == 32
    report = e.add([gallery], progress=False, workers=0)
    assert report.indexed == 0 and report.unchanged == 32
    ids, mat = e.store.signatures()
    assert len(ids) == 32 and np.all(np.abs(np.linalg.norm(mat, axis=1) - 1) < 1e-2)
    e.close()


def test_thumbnails_and_heavy_blur_are_found_by_the_copy_score(engine, gallery):
    from PIL import ImageFilter

    im = load_photo("coffee").convert("RGB").resize((384, 288), Image.LANCZOS)
    thumb = im.resize((64, 48), Image.LANCZOS)
    blurred = im.filter(ImageFilter.GaussianBlur(8))
    for q in (thumb, blurred, im):
        res = engine.search(q, k=3)
        assert res[0].path.endswith("coffee.jpg") and res[0].match == "copy" and res.lowfreq_weight == 0
        assert res[1].match == "similar"
    assert engine.search(blurred, k=1, lowfreq=0.5).lowfreq_weight == 0.5  # an explicit weight still fuses


def test_cli_lowfreq_option(gallery, tmp_path, capsys):
    from lookalike.cli import main as cli

    idx = tmp_path / "idx"
    assert cli(["index", str(gallery), "--db", str(idx), "--model", "pixels@16", "-q"]) == 0
    q = tmp_path / "thumb.png"
    load_photo("rocket").convert("RGB").resize((80, 60)).save(q)
    capsys.readouterr()
    assert cli(["search", str(q), "--db", str(idx), "-k", "1", "--lowfreq", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "low-frequency channel fused, weight 0.5" in out and "rocket.jpg" in out
    assert cli(["search", str(q), "--db", str(idx), "-k", "1"]) == 0  # a model without a copy score: no fusion
    assert "fused" not in capsys.readouterr().out
    assert cli(["search", str(q), "--db", str(idx), "--lowfreq", "loud"]) == 2
    err = capsys.readouterr().err
    assert "--lowfreq" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_query_views_find_a_turned_copy_with_its_own_score(engine, gallery):
    im = load_photo("astronaut").convert("RGB").resize((384, 288), Image.LANCZOS)
    turned = im.rotate(90, expand=True)
    plain = engine.search(turned, k=5, lowfreq="off")
    res = engine.search(turned, k=5, lowfreq="off", views="mirror-turns")
    assert res.views == "mirror-turns" and engine.search(turned, k=5, lowfreq="off", views="rot").views == "mirror-turns"
    assert res[0].path.endswith("astronaut.jpg") and res[0].score > 0.99  # the rot270 view is the original
    assert [r.rank for r in res] == [1, 2, 3, 4, 5] and len({r.id for r in res}) == 5
    by_id = {r.id: r.score for r in res}
    assert all(by_id.get(r.id, 2.0) >= r.score - 1e-6 for r in plain)  # never below the plain score
    with pytest.raises(EngineError, match="views must be one of"):
        engine.search(turned, views="sideways")


def test_auto_views_run_only_when_no_copy_is_found(engine, gallery):
    rocket = load_photo("rocket").convert("RGB").resize((300, 225), Image.LANCZOS)
    assert engine.search(rocket, k=3).views == "none"  # the default: never
    res = engine.search(rocket, k=3, views="auto")  # a copy found: no views
    assert res.views == "none" and res[0].path.endswith("rocket.jpg") and res[0].match == "copy"
    turned = load_photo("astronaut").convert("RGB").resize((384, 288), Image.LANCZOS).rotate(90, expand=True)
    plain = engine.search(turned, k=3, views="none")
    res = engine.search(turned, k=3, views="auto")
    if plain[0].match != "copy":  # the plain query found no copy: the turned views run, and find it
        assert res.views == "mirror-turns"
    assert res[0].path.endswith("astronaut.jpg") and res[0].match == "copy"
    other = load_photo("horse").convert("RGB")  # not indexed: nothing is a copy, the views are tried
    res = engine.search(other, k=3, views="auto")
    assert res.views == "mirror-turns" and all(r.match == "similar" for r in res) and len(res) == 3


def test_a_damaged_signature_counts_as_missing(gallery, tmp_path):
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([gallery], progress=False, workers=0)
    e.close()
    con = sqlite3.connect(tmp_path / "idx" / "metadata.db")
    con.execute("UPDATE images SET lowfreq = x'0102' WHERE id = 1")  # a truncated value
    con.commit()
    con.close()
    e = Engine.open(tmp_path / "idx")
    ids, mat = e.store.signatures()
    assert 1 not in ids.tolist() and len(ids) == 31 and mat.shape == (31, SIGNATURE_DIM)
    res = e.search(gallery / "moon.jpg", k=3, lowfreq=1.0)  # fused search still answers
    assert res[0].path.endswith("moon.jpg")
    e.close()
