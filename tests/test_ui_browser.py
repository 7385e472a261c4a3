"""A real browser drives ``lookalike ui``: upload a photo, wait for the results grid, check the top result.

Runs headless Debian Chromium through the ``playwright`` Python package (``executable_path``; Playwright's own
browser download is not used). Skips only when no chromium binary or no playwright package is present.
"""
from __future__ import annotations

import shutil

import pytest
from helpers import ui_server, wait_idle
from lookalike.data.photos import load_photo
from PIL import Image

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def browser_index(tmp_path_factory, photo_dir):
    from lookalike.retrieval.engine import Engine

    root = tmp_path_factory.mktemp("uibrowser")
    images = root / "images"
    shutil.copytree(photo_dir, images / "photos")
    db = root / "index"
    with Engine.open(db, model="efficientnet_lite0") as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    # a query the index has never seen: chelsea the cat, cropped, resized and JPEG-recompressed
    im = load_photo("chelsea").convert("RGB")
    w, h = im.size
    im = im.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.97))).resize((256, 192), Image.BICUBIC)
    query = root / "cat-query.jpg"
    im.save(query, quality=70)
    return db, query


@pytest.fixture(scope="module")
def server(browser_index):
    with ui_server(browser_index[0]) as url:
        yield url


def test_upload_shows_expected_top_result(browser, server, browser_index, tmp_path):
    _, query = browser_index
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # nothing may leave 127.0.0.1
    outside: list[str] = []
    page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(server)
                                      or route.request.url.startswith("data:") or route.request.url.startswith("blob:")
                                      else (outside.append(route.request.url), route.abort())))
    page.goto(server + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
    page.set_input_files("input[type=file]", str(query))

    top = page.locator(".st-key-result-1")
    top.wait_for(timeout=180_000)
    page.wait_for_function(
        "() => { const e = document.querySelector('.st-key-result-1'); return e && e.querySelector('img'); }",
        timeout=60_000)
    wait_idle(page)
    text = top.inner_text()
    shot = tmp_path / "search.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert "chelsea.png" in text, f"top result was not the cat photo: {text!r}"
    assert "photos" in text  # folder shown
    assert page.locator("[class*='st-key-result-']").count() >= 5

    # clicking a result searches with it: its own file comes back first, with score 1
    second = page.locator(".st-key-result-2")
    name2 = [t for t in second.inner_text().split() if t.endswith(".png")][0]
    second.get_by_role("button", name="Search with this").click()
    page.wait_for_function(
        "(n) => { const e = document.querySelector('.st-key-result-1'); return e && e.innerText.includes(n)"
        " && e.innerText.includes('1.000'); }", arg=name2, timeout=120_000)
    wait_idle(page)
    assert not outside, f"the page tried to reach outside 127.0.0.1: {outside[:5]}"
    page.close()


def test_unreadable_upload_gives_a_message(browser, server, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
    page.set_input_files("input[type=file]", str(bad))
    alert = page.locator("[data-testid=stAlertContentError]")
    alert.wait_for(timeout=120_000)
    msg = alert.inner_text()
    assert "Cannot read" in msg and "broken.png" in msg
    assert page.locator("[data-testid=stException]").count() == 0  # no stack trace
    assert page.locator(".st-key-result-1").count() == 0
    page.close()
