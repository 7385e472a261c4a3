"""Property-based fuzz of the HTTP API (JSON bodies, multipart bodies, query strings, path parameters, content types)
and of ``lookalike.json``: every input gets an answer that names the reason (a 4xx with a one-line ``detail``) or a
result, never a 500 or a traceback; a damaged configuration opens or is refused in one line."""
from __future__ import annotations

import io
import json
import shutil
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike import Engine
from lookalike.errors import LookalikeError

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lookalike.ui.api import create_app  # noqa: E402

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODEL = "pixels@16"
ANSWERS = {200, 400, 403, 404, 413, 415, 422}


@pytest.fixture(scope="module")
def served(photo_dir, tmp_path_factory):
    """(images, index, client) over the ten photos; the client reports a 500 instead of raising."""
    root = tmp_path_factory.mktemp("fuzzapi")
    images = Path(shutil.copytree(photo_dir, root / "photos"))
    with Engine.open(root / "index", model=MODEL) as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    with TestClient(create_app(root / "index"), raise_server_exceptions=False) as c:
        yield images, root / "index", c


def _answered(r) -> None:
    assert r.status_code in ANSWERS, (r.status_code, r.text[:300])
    if r.status_code != 200:
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail and "Traceback" not in detail, detail


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
KEYS = st.sampled_from(["path", "vector", "k", "min_score", "denoise", "image", "x"])


@FUZZ
@given(st.dictionaries(KEYS, json_values | st.lists(st.floats(allow_nan=True), max_size=800), max_size=5))
def test_json_bodies_are_answered_with_a_reason(served, body):
    _, _, c = served
    try:
        content = json.dumps(body, allow_nan=True)
    except ValueError:
        return
    _answered(c.post("/search", content=content, headers={"content-type": "application/json"}))


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["application/json", "multipart/form-data", "multipart/form-data; "
                                                 "boundary=x", "text/plain", "", "image/png", "application/x-www-form-urlencoded"]))
def test_raw_bodies_under_any_content_type_are_answered(served, raw, ctype):
    _, _, c = served
    _answered(c.post("/search", content=raw, headers={"content-type": ctype} if ctype else {}))


def _png(seed: int, size: int) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((size, size), 10 + seed % 50).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@FUZZ
@given(st.integers(0, 1000), st.integers(1, 40), st.sampled_from(["whole", "cut", "random", "empty"]),
       st.dictionaries(st.sampled_from(["k", "min_score", "denoise", "colour", "vector"]), st.text(max_size=12),
                       max_size=3), st.sampled_from(["image", "img", "image"]))
def test_multipart_bodies_are_answered_with_a_reason(served, seed, size, kind, fields, name):
    _, _, c = served
    data = _png(seed, size)
    data = {"whole": data, "cut": data[: len(data) // 2], "random": bytes((seed * 7 + i) % 256 for i in range(size * 9)),
            "empty": b""}[kind]
    _answered(c.post("/search", files={name: ("q.png", data, "application/octet-stream")}, data=fields))


@FUZZ
@given(st.text(max_size=30), st.text(max_size=12))
def test_image_paths_and_query_strings_are_answered(served, image_id, size):
    _, _, c = served
    quoted = urllib.parse.quote(image_id, safe="")
    for url in (f"/images/{quoted}", f"/images/{quoted}/thumbnail?size={urllib.parse.quote(size)}",
                f"/images/1/thumbnail?size={urllib.parse.quote(size)}"):
        r = c.get(url)
        assert r.status_code in ANSWERS | {405}, (url, r.status_code, r.text[:200])


FIELDS = ["model", "dim", "preprocess", "precision", "index_type", "factory", "index_written", "db_url", "max_memory",
          "on_disk", "search", "hnsw_missed_target", "recall_target", "format", "adapted", "extra"]


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FIELDS), json_values | st.sampled_from(
    [True, False, 0, -1, 2**70, "", "x", "sqlite://", "postgresql://", "IVF4,PQ99", "HNSW", "checkpoint:/etc/passwd",
     {"file": "../../x.pt"}, {"ef_search": "abc", "factory": "Flat"}, [1]]), min_size=1, max_size=4))
def test_a_damaged_lookalike_json_opens_or_is_refused_in_one_line(served, changes):
    _, index, _ = served
    cfg_path = index / "lookalike.json"
    original = cfg_path.read_text()
    try:
        cfg = json.loads(original)
        cfg.update(changes)
        cfg_path.write_text(json.dumps(cfg))
        try:
            with Engine.open(index, create=False) as eng:
                st_ = eng.status()
                assert st_.images == 10
        except LookalikeError as exc:
            assert "\n" not in str(exc) and str(exc), str(exc)
    finally:
        cfg_path.write_text(original)
