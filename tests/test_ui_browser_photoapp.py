"""Headless Chromium on the Search page as a photo app (issue 24): the viewer (true size, path and Download in view,
arrow keys, Esc), paste and drop anywhere, ``/`` to the upload, two columns on a phone, Previous / Next."""
from __future__ import annotations

import base64
import shutil

import pytest
from helpers import ui_server, wait_idle
from lookalike.data.photos import load_photo, photo_crops, unseen_query

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def app(tmp_path_factory, photo_dir):
    from lookalike.retrieval.engine import Engine

    root = tmp_path_factory.mktemp("uiphoto")
    images = root / "images"
    shutil.copytree(photo_dir, images / "photos")
    cat = load_photo("chelsea").convert("RGB")
    (images / "copies").mkdir()
    cat.resize((cat.width // 4, cat.height // 4)).save(images / "copies" / "chelsea-tiny.jpg", quality=85)
    photo_crops(images / "crops", 20, seed=3)  # more than one page of 12
    with Engine.open(root / "index", model="efficientnet_lite0") as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    query = unseen_query(root / "cat-query.jpg")
    with ui_server(root / "index") as url:
        yield url, query


def open_search(browser, url: str, viewport: dict, **kw):
    page = browser.new_page(viewport=viewport, **kw)
    page.goto(url + "/")
    page.wait_for_selector(".st-key-q_upload input[type=file]", state="attached", timeout=120_000)
    wait_idle(page)
    return page


def wait_results(page) -> None:
    page.locator(".st-key-result-1 img").wait_for(timeout=180_000)
    wait_idle(page)


def file_event(page, kind: str, b64: str, selector: str = "body") -> None:
    """What the browser does on Ctrl+V or a drop of an image file on ``selector``."""
    page.locator(selector).first.evaluate("""(el, [kind, b64]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "given.jpg", {type: "image/jpeg"}));
        const ev = kind === "paste" ? new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true})
                                    : new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true});
        el.dispatchEvent(ev);
    }""", [kind, b64])


@pytest.mark.parametrize("kind", ["paste", "drop"])
def test_paste_or_drop_anywhere_on_the_search_page(browser, app, kind):
    url, query = app
    page = open_search(browser, url, DESKTOP)
    file_event(page, kind, base64.b64encode(query.read_bytes()).decode(), "[data-testid=stMain] h1")
    wait_results(page)
    assert "chelsea" in page.locator(".st-key-result-1").inner_text()
    page.get_by_text("Query: given.jpg").wait_for(timeout=60_000)  # the preview (st.image) may come after the grid
    page.close()


def test_slash_focuses_the_upload(browser, app):
    page = open_search(browser, app[0], DESKTOP)
    page.locator("[data-testid=stMain] h1").click()
    page.keyboard.press("/")
    page.wait_for_function("() => document.activeElement && document.activeElement.closest("
                           "'.st-key-q_upload [data-testid=stFileUploaderDropzone]')", timeout=10_000)
    page.keyboard.press("Tab")  # keyboard focus moves on and shows a ring wherever it lands
    ring = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                         " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
    assert ring[0] != "none" and ring[1] >= 2, ring
    page.close()


def test_viewer_true_size_arrows_and_esc(browser, app):
    url, query = app
    page = open_search(browser, url, DESKTOP)
    page.set_input_files(".st-key-q_upload input[type=file]", str(query))
    wait_results(page)
    names = [page.locator(f".st-key-result-{i}").inner_text().split("\n") for i in (1, 2)]
    page.locator(".st-key-result-1").get_by_role("button", name="Open original").click()
    dialog = page.get_by_role("dialog")
    dialog.locator(".st-key-viewer-image img").wait_for(timeout=60_000)
    wait_idle(page)
    assert "1 of" in dialog.inner_text()
    img = dialog.locator(".st-key-viewer-image img")
    page.wait_for_function("() => { const i = document.querySelector('[role=dialog] .st-key-viewer-image img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    shown_w, natural_w = img.evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
    assert shown_w <= natural_w + 0.5, (shown_w, natural_w)  # never enlarged
    for label in ("Download original",):  # path and Download on the first screen, above the picture
        box = dialog.get_by_role("button", name=label).bounding_box()
        assert box is not None and box["y"] + box["height"] <= DESKTOP["height"], box
    first_caption = dialog.locator("[data-testid=stCaptionContainer]").first.inner_text()
    page.keyboard.press("ArrowRight")
    dialog.get_by_text("2 of").wait_for(timeout=60_000)
    wait_idle(page)
    second_caption = dialog.locator("[data-testid=stCaptionContainer]").first.inner_text()
    assert second_caption != first_caption
    assert any(t in second_caption for t in names[1] if t.endswith((".png", ".jpg"))), (second_caption, names[1])
    page.keyboard.press("ArrowLeft")
    dialog.get_by_text("1 of").wait_for(timeout=60_000)
    wait_idle(page)
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached", timeout=30_000)
    page.close()


def test_phone_shows_two_columns_and_pages_turn(browser, app):
    url, query = app
    page = open_search(browser, url, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.set_input_files(".st-key-q_upload input[type=file]", str(query))
    wait_results(page)
    a = page.locator(".st-key-result-1").bounding_box()
    b = page.locator(".st-key-result-2").bounding_box()
    assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1, (a, b)  # side by side
    assert a["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] + 1
    first = page.locator(".st-key-result-1").inner_text()
    page.get_by_role("button", name="Next →").click()
    page.wait_for_function("(t) => { const e = document.querySelector('.st-key-result-1');"
                           " return !e && document.querySelector('[class*=st-key-result-]'); }", arg=first,
                           timeout=60_000)
    wait_idle(page)
    assert "page 2" in page.inner_text("body")
    page.close()


def test_options_stay_open_after_a_change(browser, app):
    page = open_search(browser, app[0], DESKTOP)
    page.get_by_text("Options: 12 per page").first.click()
    slider = page.get_by_role("slider", name="Results per page")
    slider.wait_for(timeout=30_000)
    slider.focus()
    slider.press("ArrowRight")  # 13 per page: the expander's label changes with it
    page.get_by_text("Options: 13 per page").first.wait_for(timeout=30_000)
    wait_idle(page)
    page.wait_for_timeout(300)
    wait_idle(page)
    assert slider.is_visible()  # the expander did not close
    page.close()
