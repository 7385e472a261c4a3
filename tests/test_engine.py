"""The engine end to end on real photos, real SQLite and real FAISS."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lookalike import Engine, EngineError
from lookalike.cli import main as cli
from lookalike.data.photos import load_photo
from lookalike.retrieval.models import DEFAULT_EMBEDDER
from helpers import PHOTOS, consistent, exif_rotated_jpeg, save_rgb


@pytest.fixture(scope="module")
def default_index(tmp_path_factory):
    """Photos plus their copies (exact, resized, recompressed, EXIF-rotated), indexed with the default model."""
    d = tmp_path_factory.mktemp("copies")
    src = d / "photos"
    for n in PHOTOS:
        save_rgb(load_photo(n), src / f"{n}.png")
    copies = d / "copies"
    copies.mkdir()
    shutil.copy(src / "chelsea.png", copies / "chelsea-exact.png")
    im = Image.open(src / "astronaut.png").convert("RGB")
    im.resize((im.width // 3, im.height // 3), Image.BICUBIC).save(copies / "astronaut-small.png")
    Image.open(src / "coffee.png").convert("RGB").save(copies / "coffee-q35.jpg", quality=35)
    exif_rotated_jpeg(Image.open(src / "rocket.png"), copies / "rocket-exif6.jpg")
    engine = Engine.open(d / "index")
    assert (engine.config.model, engine.dim) == (DEFAULT_EMBEDDER, 1024) == ("ntxent-copies", 1024)
    report = engine.add([d], progress=False, workers=0)
    assert report.indexed == len(PHOTOS) + 3 and report.skipped == 0
    yield engine, src, copies
    engine.close()


@pytest.mark.parametrize("copy,original", [("astronaut-small.png", "astronaut.png"), ("coffee-q35.jpg", "coffee.png"),
                                           ("rocket-exif6.jpg", "rocket.png")])
def test_each_copy_finds_its_original(default_index, copy, original):
    engine, src, copies = default_index
    res = engine.search(copies / copy, k=3, exclude_self=True)
    assert Path(res[0].path) == src / original, [r.path for r in res]
    assert res[0].score > 0.8
    assert res[0].score - res[1].score > 0.2


def test_exact_duplicate_shares_one_vector(default_index):
    engine, src, copies = default_index
    res = engine.search(copies / "chelsea-exact.png", k=2)
    assert res[0].score > 0.999
    assert sorted(res[0].paths) == sorted([str(src / "chelsea.png"), str(copies / "chelsea-exact.png")])
    st = engine.status()
    assert st.duplicates == 1 and st.images == st.vectors == len(PHOTOS) + 3
    consistent(engine)


def test_query_forms_agree(default_index):
    engine, src, _ = default_index
    p = src / "coins.png"
    by_path = engine.search(p, k=1)[0]
    by_bytes = engine.search(p.read_bytes(), k=1)[0]
    by_pil = engine.search(Image.open(p), k=1)[0]
    assert by_path.path == by_bytes.path == by_pil.path == str(p)
    assert abs(by_path.score - by_pil.score) < 1e-4


def test_rebuild_to_other_types_keeps_answers(default_index):
    engine, src, copies = default_index
    before = [r.path for r in engine.search(copies / "coffee-q35.jpg", k=3)]
    for t in ("HNSW32", "IVF1024,Flat", "Flat"):
        factory = engine.rebuild(t).factory
        assert factory.startswith(t.split(",")[0][:3])
        reopened = Engine.open(engine.root)
        assert reopened.index.factory == factory
        after = [r.path for r in reopened.search(copies / "coffee-q35.jpg", k=3)]
        assert after[0] == before[0]
        reopened.close()


def test_other_model_is_refused(default_index):
    engine, *_ = default_index
    with pytest.raises(EngineError, match=f"built with model '{DEFAULT_EMBEDDER}'"):
        Engine.open(engine.root, model="pixels")
    with pytest.raises(EngineError, match=f"built with model '{DEFAULT_EMBEDDER}', not 'efficientnet_lite0'"):
        Engine.open(engine.root, model="efficientnet_lite0")


def test_index_of_the_old_default_keeps_its_model(tmp_path, capsys):
    """An index built with efficientnet_lite0 (the default before ntxent-copies) opens, searches and grows with
    the model it records: 1280-d vectors, never the new default's."""
    d = _files(tmp_path)
    idx = tmp_path / "idx"
    assert cli(["index", str(d), "--db", str(idx), "--model", "efficientnet_lite0", "-q", "--workers", "0"]) == 0
    capsys.readouterr()
    with Engine.open(idx) as e:  # no model given: the recorded one
        assert (e.config.model, e.dim) == ("efficientnet_lite0", 1280)
        small = load_photo("coffee").convert("RGB")
        res = e.search(small.resize((small.width // 3, small.height // 3), Image.BICUBIC), k=2)
        assert Path(res[0].path) == d / "coffee.png" and res[0].score > 0.8
        assert e.embedder.dim == 1280 and e.embedder.name == "efficientnet_lite0"
    save_rgb(load_photo("coins"), d / "coins.png")
    assert cli(["index", str(d), "--db", str(idx), "-q", "--workers", "0"]) == 0  # no --model: adds with lite0
    capsys.readouterr()
    assert cli(["search", str(d / "coins.png"), "--db", str(idx), "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert hit["path"] == str(d / "coins.png") and hit["score"] > 0.999
    assert cli(["status", "--db", str(idx), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["model"], st["dim"], st["images"]) == ("efficientnet_lite0", 1280, 6)


# --------------------------------------------------------------------------- pipeline (fast embedder)
def _files(tmp_path, names=("astronaut", "chelsea", "coffee", "rocket", "camera")):
    d = tmp_path / "lib"
    for n in names:
        save_rgb(load_photo(n), d / f"{n}.png")
    return d


def test_bad_file_zoo(tmp_path, monkeypatch):
    d = _files(tmp_path)
    bad = d / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    good = (d / "coffee.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "text.jpg").write_text("definitely not a jpeg")
    Image.new("L", (2200, 2200), 128).save(bad / "bomb.png")
    save_rgb(load_photo("coins"), bad / "locked.png")
    os.symlink(bad / "gone.jpg", bad / "broken.jpg")
    os.symlink(bad / "loop-b.jpg", bad / "loop-a.jpg")
    os.symlink(bad / "loop-a.jpg", bad / "loop-b.jpg")
    with open(os.path.join(os.fsencode(bad), b"na\xefve.png"), "wb") as fh:
        fh.write(good)
    locked = str(bad / "locked.png")
    if os.geteuid() == 0:
        real_open = os.open

        def fake_open(file, *a, **k):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return real_open(file, *a, **k)

        monkeypatch.setattr(os, "open", fake_open)
    else:
        os.chmod(locked, 0)

    engine = Engine.open(tmp_path / "idx", model="pixels", max_pixels=4_000_000)
    warnings = []
    report = engine.add([d], progress=False, workers=0, warn=lambda p, r: warnings.append((p, r)))
    assert report.indexed == 5 and report.skipped == 9
    reasons = {os.path.basename(p): r for p, r in engine.errors()}
    assert reasons["zero.jpg"].startswith("empty file")
    assert reasons["truncated.png"].startswith("truncated")
    assert reasons["text.jpg"].startswith("not an image")
    assert reasons["bomb.png"].startswith("too large")
    assert reasons["locked.png"] == "permission denied"
    assert reasons["broken.jpg"].startswith("broken symlink")
    assert reasons["loop-a.jpg"] == reasons["loop-b.jpg"] == "symlink loop"
    assert reasons["na\\xefve.png"] == "file name is not valid UTF-8"
    assert len(warnings) == 9 and all(r for _, r in warnings)
    consistent(engine)
    # nothing changed: the second run reads nothing and keeps every row
    again = engine.add([d], progress=False, workers=0, warn=None)
    assert (again.indexed, again.unchanged, again.skipped, again.removed) == (0, 5, 9, 0)
    assert engine.status().images == 5


def test_incremental_add_modify_delete_rename(tmp_path):
    d = _files(tmp_path)
    engine = Engine.open(tmp_path / "idx", model="pixels")
    r = engine.add([d], progress=False, workers=0)
    assert r.indexed == 5
    ids_before = {p: engine.store.id_for_path(str(d / f"{p}.png")) for p in ("astronaut", "coffee", "rocket")}

    # add
    save_rgb(load_photo("coins"), d / "coins.png")
    r = engine.add([d], progress=False, workers=0)
    assert (r.indexed, r.unchanged) == (1, 5)
    assert engine.search(d / "coins.png", k=1)[0].path == str(d / "coins.png")

    # modify: new content at the same path replaces the old vector
    save_rgb(load_photo("moon"), d / "coffee.png")
    os.utime(d / "coffee.png", ns=(1, 1))
    r = engine.add([d], progress=False, workers=0)
    assert r.indexed == 1
    new_id = engine.store.id_for_path(str(d / "coffee.png"))
    assert new_id != ids_before["coffee"]
    assert ids_before["coffee"] not in set(engine.index.visible_ids().tolist())
    assert engine.search(d / "coffee.png", k=1)[0].score > 0.999

    # delete
    (d / "rocket.png").unlink()
    r = engine.add([d], progress=False, workers=0)
    assert r.removed == 1 and r.indexed == 0
    assert engine.store.id_for_path(str(d / "rocket.png")) is None
    assert ids_before["rocket"] not in set(engine.index.visible_ids().tolist())

    # rename / move into a sub-folder: recognised by hash, not embedded again, same id
    (d / "moved").mkdir()
    os.rename(d / "astronaut.png", d / "moved" / "astro.png")
    r = engine.add([d], progress=False, workers=0)
    assert (r.indexed, r.linked, r.removed) == (0, 1, 1)
    assert engine.store.id_for_path(str(d / "moved" / "astro.png")) == ids_before["astronaut"]
    consistent(engine)
    assert engine.status().images == engine.status().files == 5

    # the state survives reopening
    engine.close()
    again = Engine.open(tmp_path / "idx")
    consistent(again)
    assert again.search(d / "moved" / "astro.png", k=1)[0].path == str(d / "moved" / "astro.png")
    # Engine.remove forgets a folder
    assert again.remove([d / "moved"]) == 1
    assert again.status().images == 4
    consistent(again)


def test_hnsw_deletions_are_hidden_and_survive_reopen(tmp_path):
    d = _files(tmp_path)
    engine = Engine.open(tmp_path / "idx", model="pixels", index_type="HNSW32")
    engine.add([d], progress=False, workers=0)
    (d / "camera.png").unlink()
    engine.add([d], progress=False, workers=0)
    assert all(not r.path.endswith("camera.png") for r in engine.search(d / "coffee.png", k=10))
    engine.close()
    again = Engine.open(tmp_path / "idx")
    assert len(again.index) == 4
    consistent(again)


def test_damaged_or_missing_faiss_file_then_rebuild(tmp_path, capsys):
    d = _files(tmp_path)
    idx = tmp_path / "idx"
    Engine.open(idx, model="pixels").add([d], progress=False, workers=0)
    (idx / "vectors.faiss").write_bytes(b"corrupt" * 50)
    with pytest.raises(EngineError, match="damaged.*lookalike rebuild"):
        Engine.open(idx)
    assert cli(["search", str(d / "coffee.png"), "--db", str(idx)]) == 2
    assert "damaged" in capsys.readouterr().err
    assert cli(["rebuild", "--db", str(idx)]) == 0
    assert "rebuilt" in capsys.readouterr().out
    e = Engine.open(idx)
    assert e.search(d / "coffee.png", k=1)[0].path == str(d / "coffee.png")
    e.close()
    (idx / "vectors.faiss").unlink()
    with pytest.raises(EngineError, match="missing"):
        Engine.open(idx)
    assert cli(["rebuild", "--db", str(idx), "--index-type", "HNSW32"]) == 0
    e = Engine.open(idx)
    assert e.index.factory == "HNSW32" and len(e.index) == 5


def test_cli_index_search_status_errors(tmp_path, capsys):
    d = _files(tmp_path)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    idx = tmp_path / "idx"
    assert cli(["index", str(d), "--db", str(idx), "--model", "pixels", "-q", "--workers", "0"]) == 0
    out = capsys.readouterr()
    assert "indexed 5, unchanged 0" in out.out and "skipped 1" in out.out
    assert "broken.png" in out.err
    assert cli(["search", str(d / "rocket.png"), "--db", str(idx), "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"results", "denoise"} and out["denoise"] is None
    res = out["results"]
    assert [set(r) for r in res] == [{"rank", "score", "path", "sha256", "width", "height", "id", "paths", "copy_score",
                                      "match"}] * 3
    assert res[0]["path"] == str(d / "rocket.png") and res[0]["score"] > 0.999
    assert (res[0]["width"], res[0]["height"]) == load_photo("rocket").size
    assert cli(["status", "--db", str(idx), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["images"] == 5 and st["skipped"] == 1 and st["model"] == "pixels" and st["dim"] == 3072
    assert cli(["errors", "--db", str(idx)]) == 0
    assert "broken.png: " in capsys.readouterr().out
    # bad input: one line, exit code 2
    assert cli(["search", str(tmp_path / "nope.jpg"), "--db", str(idx)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.jpg" in err and len(err.splitlines()) == 1
    assert cli(["search", str(d / "broken.png"), "--db", str(idx)]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert cli(["search", str(d / "rocket.png"), "--db", str(tmp_path / "no-index")]) == 2
    assert "not a lookalike index" in capsys.readouterr().err
    assert cli(["search", str(d / "rocket.png"), "--db", str(idx), "-k", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lookalike: search: argument -k: must be positive, got 0 (see 'lookalike search --help')"


def test_min_score_filters(tmp_path):
    d = _files(tmp_path)
    e = Engine.open(tmp_path / "idx", model="pixels")
    e.add([d], progress=False, workers=0)
    res = e.search(d / "rocket.png", k=5, min_score=0.99)
    assert len(res) == 1 and res[0].score >= 0.99


def test_progress_callback_reports_each_phase(tmp_path):
    d = _files(tmp_path)
    (d / "bad.png").write_bytes(b"nope")
    shutil.copy(next(d.glob("*.png")), d / "copy.png")  # two files of one size: hashed before decoding, one decode
    seen: dict[str, list[tuple[int, int | None]]] = {}
    e = Engine.open(tmp_path / "idx", model="pixels")
    e.add([d], progress=lambda phase, n, total: seen.setdefault(phase, []).append((n, total)), workers=0, warn=None)
    assert set(seen) == {"scanning", "hashing", "embedding"}
    assert seen["hashing"][-1] == (2, 2) and seen["embedding"][-1] == (6, 6)
    assert [n for n, _ in seen["embedding"]] == sorted(n for n, _ in seen["embedding"])


def test_unchanged_run_does_not_rewrite_the_index_file(tmp_path):
    d = _files(tmp_path)
    e = Engine.open(tmp_path / "idx", model="pixels")
    e.add([d], progress=False, workers=0)
    before = (tmp_path / "idx" / "vectors.faiss").stat()
    r = e.add([d], progress=False, workers=0)
    assert r.unchanged == 5 and r.indexed == 0
    after = (tmp_path / "idx" / "vectors.faiss").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (d / "camera.png").unlink()  # a real change is written
    e.add([d], progress=False, workers=0)
    assert (tmp_path / "idx" / "vectors.faiss").stat().st_ino != before.st_ino
    e.close()
    assert len(Engine.open(tmp_path / "idx").index) == 4
