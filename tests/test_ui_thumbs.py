"""The thumbnail route (lookalike.ui.thumbs): signed URLs of real files, served as JPEG; anything else refused."""
from __future__ import annotations

import io
import os

from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lookalike.ui import thumbs


def test_signed_urls_are_served_and_others_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(thumbs, "_served", False)  # restored after: the other tests' pages draw thumbnails inline
    photo = tmp_path / "a b é.png"
    Image.new("RGB", (640, 320), (200, 40, 40)).save(photo)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (64, 64)).save(secret)
    client = TestClient(Starlette(routes=thumbs.routes()))
    assert thumbs.served()
    url = thumbs.thumbnail_url(str(photo), 256)
    assert url is not None and url.startswith("./thumb?")
    r = client.get(url[1:])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and "immutable" in r.headers["cache-control"]
    assert Image.open(io.BytesIO(r.content)).size == (256, 128)
    # another file, size or version under the same signature; no signature; a file gone since
    assert client.get(url[1:].replace("a+b", "secret").replace("+%C3%A9", "")).status_code == 404
    assert client.get(url[1:].replace("px=256", "px=512")).status_code == 404
    assert client.get(url[1:].split("&s=")[0]).status_code == 404
    os.remove(photo)
    assert client.get(url[1:]).status_code == 404
    assert thumbs.thumbnail_url(str(photo), 256) is None


def test_img_tag_keeps_the_thumbnail_box_and_escapes():
    tag = thumbs.img_tag('./thumb?p="x"', 1000, 500, 256, "<b>.png")
    assert 'loading="lazy"' in tag and 'width="256" height="128"' in tag
    assert '"x"' not in tag and "<b>" not in tag
    assert 'loading="eager"' in thumbs.img_tag("./thumb", 10, 10, 256, "a", lazy=False)
