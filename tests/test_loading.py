"""Image loading: every mode to RGB, EXIF orientation, and one clear reason for each kind of bad file."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from lookalike.indexer.loading import ImageLoadError, load_image, open_image_bytes, sha256_file, to_rgb
from lookalike.data.photos import load_photo
from helpers import exif_rotated_jpeg


def test_exif_orientation_is_applied(tmp_path):
    im = load_photo("chelsea").convert("RGB")
    p = exif_rotated_jpeg(im, tmp_path / "rot.jpg")
    with Image.open(p) as raw:
        assert raw.size == (im.height, im.width)  # stored sideways
    out = load_image(p)
    assert out.size == im.size
    diff = np.abs(np.asarray(out, np.float32) - np.asarray(im, np.float32)).mean()
    assert diff < 6, diff
    assert out.info["original_size"] == im.size


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "CMYK", "I;16", "1", "L", "I", "F"])
def test_every_mode_becomes_rgb(mode, tmp_path):
    base = load_photo("astronaut").convert("RGB").resize((64, 64))
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257)
        im = Image.fromarray(arr)
        assert im.mode.startswith("I;16")
        path = tmp_path / "x.png"
    elif mode in ("I", "F"):
        im = base.convert("L").convert(mode)
        path = tmp_path / "x.tif"
    else:
        im = base.convert(mode)
        path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png" if mode != "LA" else "x.png")
        if mode == "CMYK":
            path = tmp_path / "x.tif"
    im.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (64, 64)
    gray_ref = np.asarray(base.convert("L"), np.float32)
    gray_out = np.asarray(out.convert("L"), np.float32)
    if mode != "1":
        assert np.abs(gray_ref - gray_out).mean() < 25, mode


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    out = to_rgb(im)
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = load_image(p)
    r, g, b = out.getpixel((5, 5))
    assert r > 200 and g < 50 and b < 50


def test_bad_files_have_clear_reasons(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is text, not a picture" * 10)
    good = tmp_path / "good.jpg"
    load_photo("coffee").save(good, quality=90)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)

    cases = {empty: "empty file", junk: "not an image", trunc: "truncated", tmp_path / "missing.jpg": "not found"}
    for path, word in cases.items():
        with pytest.raises(ImageLoadError) as ei:
            load_image(path)
        assert word in ei.value.reason, (path, ei.value.reason)
        assert str(path) in str(ei.value)
    with pytest.raises(ImageLoadError) as ei:
        load_image(big, max_pixels=1_000_000)
    assert "too large" in ei.value.reason and "9,000,000" in ei.value.reason
    assert load_image(big).size == (3000, 3000)


def test_permission_denied_is_reported(tmp_path, monkeypatch):
    p = tmp_path / "secret.png"
    load_photo("coins").save(p)
    if os.geteuid() != 0:
        os.chmod(p, 0)
    else:  # root reads everything: make open() fail the way it does for other users
        real_open = os.open

        def fake_open(file, *a, **k):
            if os.fspath(file) == str(p):
                raise PermissionError(13, "Permission denied", str(p))
            return real_open(file, *a, **k)

        monkeypatch.setattr(os, "open", fake_open)
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert ei.value.reason == "permission denied"


def test_draft_decoding_keeps_content_and_reports_original_size(tmp_path):
    im = load_photo("astronaut").convert("RGB").resize((2048, 2048))
    p = tmp_path / "big.jpg"
    im.save(p, quality=90)
    small = load_image(p, draft_size=224)
    assert 224 <= small.width < 2048
    assert small.info["original_size"] == (2048, 2048)
    full = load_image(p).resize(small.size)
    assert np.abs(np.asarray(full, np.float32) - np.asarray(small, np.float32)).mean() < 8


def test_bytes_and_hash(tmp_path):
    p = tmp_path / "a.png"
    load_photo("rocket").save(p)
    data = p.read_bytes()
    assert open_image_bytes(data).size == load_image(p).size
    import hashlib

    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageLoadError):
        open_image_bytes(b"")
