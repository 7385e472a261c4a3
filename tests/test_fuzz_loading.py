"""Property-based fuzz of image and query loading: random bytes behind real image headers, random sizes and
modes, random arrays. Each input gives an RGB image or a one-line error, within a time and memory bound."""
from __future__ import annotations

import io
import resource
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike import EngineError
from lookalike.indexer.loading import ImageLoadError, open_image_bytes
from lookalike.retrieval.searcher import load_query

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SECONDS = 5.0  # per input: far above any real decode of these sizes (ms)
MAX_PIXELS = 4_000_000


def _encoded(fmt: str, mode: str, w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    im = Image.fromarray(arr[:, :, 0] if bands == 1 else arr, "L" if bands == 1 else {3: "RGB", 4: "RGBA"}[bands])
    im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


FORMATS = [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"), ("PNG", "1"), ("JPEG", "RGB"), ("JPEG", "L"),
           ("JPEG", "CMYK"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("TIFF", "I;16"), ("WEBP", "RGBA")]


@st.composite
def damaged_images(draw) -> bytes:
    """A real encoded image, then truncated, bit-flipped, spliced with random bytes, or with a huge header size."""
    fmt, mode = draw(st.sampled_from(FORMATS))
    data = bytearray(_encoded(fmt, mode, draw(st.integers(1, 96)), draw(st.integers(1, 96)), draw(st.integers(0, 2**16))))
    how = draw(st.sampled_from(["intact", "truncate", "flip", "splice", "header"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 20))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif how == "splice":
        cut = draw(st.integers(8, max(8, len(data))))
        data = data[:cut] + draw(st.binary(max_size=512))
    elif how == "header" and fmt == "PNG":  # IHDR width/height claiming a decompression bomb
        data[16:24] = (draw(st.integers(1, 2**31 - 1))).to_bytes(4, "big") + (draw(st.integers(1, 2**31 - 1))).to_bytes(4, "big")
    return bytes(data)


def _bounded(fn):
    t0 = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn()
    assert time.perf_counter() - t0 < SECONDS
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 512 * 1024  # KiB: < 512 MB more at peak
    return out


@FUZZ
@given(damaged_images())
def test_any_bytes_give_an_rgb_image_or_one_line(data):
    try:
        im = _bounded(lambda: open_image_bytes(data, max_pixels=MAX_PIXELS))
    except ImageLoadError as exc:
        assert exc.reason and "\n" not in str(exc)
        return
    assert im.mode == "RGB" and im.width * im.height <= MAX_PIXELS and im.width > 0 and im.height > 0


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_a_query_give_an_image_or_one_line(data):
    try:
        im, sha = _bounded(lambda: load_query(data, max_pixels=MAX_PIXELS))
    except EngineError as exc:
        assert str(exc).startswith("query: ") and "\n" not in str(exc)
        return
    assert im.mode == "RGB" and len(sha) == 64


@FUZZ
@given(st.lists(st.integers(0, 70), min_size=0, max_size=4),
       st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
       st.sampled_from([0.0, 1.0, 255.0, 1e9, np.nan, -5.0]))
def test_any_array_gives_an_image_or_one_line(shape, dtype, fill):
    arr = np.full(shape, fill if dtype not in (np.uint8, np.uint16, np.int32) or np.isfinite(fill) and 0 <= fill < 2**16
                  else 0).astype(dtype) if shape else np.zeros((), dtype)
    try:
        im, sha = _bounded(lambda: load_query(arr, max_pixels=MAX_PIXELS))
    except EngineError as exc:
        assert "\n" not in str(exc)
        return
    assert im.mode == "RGB" and sha is None and im.size == (shape[1], shape[0])


@pytest.mark.parametrize("fmt,mode", FORMATS)
def test_every_fuzzed_format_loads_when_intact(fmt, mode):
    im = open_image_bytes(_encoded(fmt, mode, 17, 9, 0))
    assert im.mode == "RGB" and im.size == (17, 9)
