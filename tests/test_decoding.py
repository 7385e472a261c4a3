"""Indexing's decoding (indexer/decoding.py) and the hash taken in the read that decodes: worker processes give what
a decode in this process gives; a file of a size nothing else has is read once; content that turns out to be indexed
already is linked, never stored twice."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3

import numpy as np
from PIL import Image

from lookalike import Engine
from lookalike.data.photos import load_photo
from lookalike.indexer.decoding import decode_file, decode_files
from lookalike.indexer.loading import load_image
from lookalike.indexer.signature import lowfreq_signature
from lookalike.retrieval.preprocess import PreprocessConfig
from helpers import exif_rotated_jpeg

PRE = PreprocessConfig(input_size=64)


def _folder(tmp_path, names=("coffee", "rocket", "chelsea")):
    d = tmp_path / "imgs"
    d.mkdir()
    for n in names:
        load_photo(n).convert("RGB").save(d / f"{n}.jpg", quality=90)
    exif_rotated_jpeg(load_photo("astronaut").resize((300, 200)), d / "turned.jpg")
    (d / "broken.jpg").write_bytes((d / "coffee.jpg").read_bytes()[:300])
    return d


def test_worker_processes_decode_as_this_process_does(tmp_path):
    d = _folder(tmp_path)
    paths = sorted(str(p) for p in d.iterdir())
    here = [decode_file(i, p, PRE) for i, p in enumerate(paths)]
    there = list(decode_files(paths, PRE, workers=2, ahead=2))
    assert [r.i for r in there] == list(range(len(paths)))
    for a, b, p in zip(here, there, paths):
        if p.endswith("broken.jpg"):
            assert a.pixels is None and b.pixels is None and "truncated" in b.reason
            continue
        assert a.reason is None and np.array_equal(a.pixels, b.pixels) and a.pixels.shape == (3, 64, 64)
        assert b.sha256 == hashlib.sha256(open(p, "rb").read()).hexdigest()
        im = load_image(p, draft_size=64)  # one decode serves the model input and the signature
        assert np.array_equal(b.signature, lowfreq_signature(im)) and (b.width, b.height) == im.info["original_size"]
    turned = there[paths.index(str(d / "turned.jpg"))]
    assert (turned.width, turned.height) == (300, 200)  # the EXIF orientation applied


def test_a_file_of_a_new_size_is_read_once_and_keeps_its_hash(tmp_path, monkeypatch):
    import lookalike.indexer.pipeline as pipeline

    d = _folder(tmp_path)
    shutil.copy(d / "rocket.jpg", d / "rocket-copy.jpg")  # same size: hashed first, then linked
    hashed = []
    real = pipeline.sha256_file
    monkeypatch.setattr(pipeline, "sha256_file", lambda p: hashed.append(p) or real(p))
    with Engine.open(tmp_path / "idx", model="pixels@16") as e:
        rep = e.add([d], progress=False, workers=2, warn=None)
        assert rep.indexed == 4 and rep.linked == 0 and rep.skipped == 1
        assert sorted(hashed) == sorted([str(d / "rocket.jpg"), str(d / "rocket-copy.jpg")])
        for p in d.iterdir():
            if p.name != "broken.jpg":
                assert e.store.id_for_sha(hashlib.sha256(p.read_bytes()).hexdigest()) is not None, p
        hit = e.search(d / "rocket-copy.jpg", k=1)[0]
        assert hit.score > 0.999 and e.store.counts()["images"] == 4


def test_content_hashed_while_decoding_links_to_an_image_already_stored(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    load_photo("coffee").convert("RGB").save(d / "x.jpg", quality=90)
    with Engine.open(tmp_path / "idx", model="pixels@16") as e:
        assert e.add([d], progress=False, warn=None).indexed == 1
    # an image left with no file row (a run cut short between its steps): its size is known to no file
    db = sqlite3.connect(tmp_path / "idx" / "metadata.db")
    db.execute("delete from files")
    db.commit()
    db.close()
    other = tmp_path / "b"
    other.mkdir()
    shutil.copy(d / "x.jpg", other / "same.jpg")
    with Engine.open(tmp_path / "idx") as e:
        rep = e.add([other], progress=False, warn=None, remove_missing=False)
        assert rep.indexed == 0 and rep.linked == 1 and e.store.counts()["images"] == 1
        assert e.search(other / "same.jpg", k=1)[0].path == str(other / "same.jpg")


def test_a_picture_too_small_for_the_draft_still_decodes(tmp_path):
    p = tmp_path / "tiny.jpg"
    Image.new("RGB", (20, 10), (200, 10, 10)).save(p)
    r = decode_file(0, str(p), PRE)
    assert r.pixels.shape == (3, 64, 64) and (r.width, r.height) == (20, 10) and abs(int(r.pixels[0].mean()) - 200) <= 3


def test_a_decoding_process_that_dies_stops_the_run_in_one_line(tmp_path, monkeypatch):
    import os

    import pytest

    import lookalike.indexer.decoding as decoding

    d = _folder(tmp_path)
    real = decoding.decode_file

    def crash_on_rocket(i, path, preprocess, max_pixels=decoding.DEFAULT_MAX_PIXELS):  # a decoder that segfaults
        if path.endswith("rocket.jpg"):
            os._exit(139)
        return real(i, path, preprocess, max_pixels)

    monkeypatch.setattr(decoding, "decode_file", crash_on_rocket)  # the forked workers inherit it
    paths = sorted(str(p) for p in d.iterdir())
    with pytest.raises(decoding.DecodeWorkerDied, match="ended unexpectedly"):
        list(decode_files(paths, PRE, workers=2))


def test_jpegs_decode_through_simplejpeg_as_through_pil(tmp_path, monkeypatch):
    import lookalike.indexer.loading as loading

    pytest = __import__("pytest")
    pytest.importorskip("simplejpeg")
    d = _folder(tmp_path)
    big = load_photo("astronaut").convert("RGB").resize((2000, 1500))
    for orient in (3, 6, 8):  # a phone-sized-ish picture under each turning orientation
        exif_rotated_jpeg(big, d / f"big-{orient}.jpg", orient)
    load_photo("camera").convert("L").save(d / "grey.jpg", quality=90)  # not YCbCr: PIL decodes it
    load_photo("coffee").convert("CMYK").save(d / "cmyk.jpg", quality=90)
    paths = sorted(str(p) for p in d.iterdir())
    used = []
    real = loading._scaled_jpeg
    monkeypatch.setattr(loading, "_scaled_jpeg", lambda *a: used.append(real(*a) is not None) or real(*a))
    fast = [decode_file(i, p, PRE) for i, p in enumerate(paths)]
    assert sum(used) == 7 and len(used) == len(paths)  # 4 colour JPEGs of _folder... and the 3 big ones
    monkeypatch.setattr(loading, "_scaled_jpeg", lambda *a: None)
    slow = [decode_file(i, p, PRE) for i, p in enumerate(paths)]
    for a, b, p in zip(fast, slow, paths):
        assert a.reason == b.reason, p
        if a.pixels is not None:
            assert np.array_equal(a.pixels, b.pixels) and (a.width, a.height) == (b.width, b.height), p
            assert a.sha256 == b.sha256 and np.array_equal(a.signature, b.signature), p
