"""Headless Chromium on ``lookalike ui``: the original of a result, the upload cap on the page, theme, phone width,
the Duplicates page, the Explore click. With ``LOOKALIKE_UI_SCREENSHOTS=docs/ui`` each page is also saved there at
desktop and phone width."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from lookalike.data.photos import load_photo
from PIL import Image
from helpers import ui_server, wait_idle

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("LOOKALIKE_UI_SCREENSHOTS")


def shot(page, name: str) -> None:
    """Save a full-page screenshot to $LOOKALIKE_UI_SCREENSHOTS (docs/ui) when set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)", timeout=60_000)
        page.mouse.move(2, 2)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def dup_index(tmp_path_factory, photo_dir):
    """Photos plus a half-size JPEG and a 90 % crop of the cat (near-duplicates), indexed with efficientnet_lite0."""
    from lookalike.retrieval.engine import Engine

    root = tmp_path_factory.mktemp("uibasics")
    images = root / "images"
    shutil.copytree(photo_dir, images / "photos")
    cat = load_photo("chelsea").convert("RGB")
    w, h = cat.size
    (images / "copies").mkdir()
    cat.resize((w // 2, h // 2)).save(images / "copies" / "chelsea-small.jpg", quality=80)
    cat.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(images / "copies" / "chelsea-crop.png")
    with Engine.open(root / "index", model="efficientnet_lite0") as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    query = root / "cat-query.jpg"
    cat.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.97))).resize((256, 192)).save(query, quality=70)
    big = root / "big.png"
    Image.effect_noise((400, 400), 80).convert("RGB").save(big)  # noise does not compress: ~0.4 MB
    return root / "index", query, big


@pytest.fixture(scope="module")
def app(dup_index):
    """``lookalike ui`` with a 0.05 MB upload cap."""
    with ui_server(dup_index[0], "--max-upload-mb", "0.05") as url:
        yield url


def search(page, url: str, query: Path) -> None:
    page.goto(url + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
    page.set_input_files("input[type=file]", str(query))
    page.locator(".st-key-result-1 img").wait_for(timeout=180_000)
    wait_idle(page)


def test_open_original_at_full_resolution(browser, app, dup_index):
    page = browser.new_page(viewport=DESKTOP)
    search(page, app, dup_index[1])
    shot(page, "search-desktop")
    for rank in range(1, 6):  # the first result larger than a thumbnail
        card = page.locator(f".st-key-result-{rank}").inner_text()
        w, h = (int(v) for v in next(t for t in card.split() if "×" in t and t.replace("×", "").isdigit()).split("×"))
        if max(w, h) > 256:
            break
    name = next(t for t in card.split() if t.endswith((".png", ".jpg")))
    page.locator(f".st-key-result-{rank}").get_by_role("button", name="Open original").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("img").wait_for(timeout=60_000)
    wait_idle(page)
    size = dialog.locator("img").evaluate("im => [im.naturalWidth, im.naturalHeight]")
    assert size == [w, h] and max(w, h) > 256  # the file itself, not the 256-px thumbnail
    assert f"{w}×{h}" in dialog.inner_text() and name in dialog.inner_text()
    shot(page, "original-desktop")
    page.close()


def test_paste_an_image_as_the_query(browser, app, dup_index):
    import base64

    page = browser.new_page(viewport=DESKTOP)
    page.goto(app + "/")
    page.get_by_role("tab", name="Paste").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_role("tab", name="Paste").click()
    box = page.locator("[data-testid=stChatInput] textarea")
    box.wait_for(timeout=60_000)
    data = base64.b64encode(dup_index[1].read_bytes()).decode()
    # what the browser does on Ctrl+V with an image on the clipboard: a paste event carrying the file
    box.evaluate("""(el, b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "pasted.jpg", {type: "image/jpeg"}));
        el.focus();
        el.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
    }""", data)
    page.get_by_text("pasted.jpg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # the file is uploaded before it can be sent
    box.press("Enter")
    page.locator(".st-key-result-1 img").wait_for(timeout=180_000)
    wait_idle(page)
    assert "chelsea" in page.locator(".st-key-result-1").inner_text()
    page.get_by_text("Query: pasted.jpg").wait_for(timeout=60_000)  # the preview's caption may come after the grid
    page.close()


def test_oversized_upload_shows_the_reason_and_clears_the_results(browser, app, dup_index):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(app + "/")
    page.wait_for_selector("[data-testid=stFileUploaderDropzone]", timeout=120_000)
    page.get_by_text("(up to 0.05 MB)").first.wait_for(timeout=120_000)  # the script run that labels the uploader
    wait_idle(page)
    # the server's 4x headroom ("N MB per file") is hidden by the app's style, which lands just after the label
    drop = page.locator("[data-testid=stFileUploaderDropzone]").first
    for _ in range(60):  # inner_text: the rendered text, what is hidden left out
        if "MB per file" not in drop.inner_text():
            break
        page.wait_for_timeout(500)
    assert "MB per file" not in drop.inner_text() and "(up to 0.05 MB)" in page.inner_text("body")
    search(page, app, dup_index[1])
    page.set_input_files("input[type=file]", str(dup_index[2]))
    alert = page.locator("[data-testid=stAlertContentError]")
    alert.wait_for(timeout=120_000)
    wait_idle(page)
    assert "over the 0.05 MB upload limit" in alert.inner_text()
    assert page.locator(".st-key-result-1").count() == 0 and "results from" not in page.inner_text("body")
    # over the server's own limit too (4x the cap, at least 1 MB): the same inline reason, with the file's real size,
    # and the file is never sent (the page's script gives the uploader a note of its name and size)
    huge = dup_index[2].with_name("huge.png")
    Image.effect_noise((900, 900), 80).convert("RGB").save(huge)  # about 2.4 MB
    search(page, app, dup_index[1])
    page.set_input_files("input[type=file]", str(huge))
    alert = page.locator("[data-testid=stAlertContentError]")
    alert.wait_for(timeout=120_000)
    wait_idle(page)
    mb = huge.stat().st_size / 1024 / 1024
    assert mb > 1 and f"huge.png: {mb:.3g} MB is over the 0.05 MB upload limit" in alert.inner_text()
    assert page.locator("[data-testid=stFileChipIconError]").count() == 0  # no red chip with another limit
    assert page.locator(".st-key-result-1").count() == 0
    page.close()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_theme_follows_the_system(browser, app, scheme):
    page = browser.new_page(viewport=DESKTOP, color_scheme=scheme)
    page.goto(app + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
    wait_idle(page)
    rgb = page.locator("[data-testid=stApp]").evaluate("e => getComputedStyle(e).backgroundColor")
    lum = np.mean([int(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]])
    assert (lum < 80) if scheme == "dark" else (lum > 200), rgb
    if scheme == "dark":
        shot(page, "search-dark-desktop")
    page.close()


def test_phone_width_shows_the_first_result_on_the_first_screen(browser, app, dup_index):
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    search(page, app, dup_index[1])
    page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    box = page.locator(".st-key-result-1").bounding_box()
    assert box is not None and box["y"] < PHONE["height"] - 80, box  # at least its top on the first screen
    shot(page, "search-phone")
    page.close()


def test_duplicates_page_groups_side_by_side(browser, app):
    for name, vp in (("desktop", DESKTOP), ("phone", PHONE)):
        page = browser.new_page(viewport=vp)
        page.goto(app + "/duplicates")
        page.locator(".st-key-dup-group-1").wait_for(timeout=180_000)
        wait_idle(page)
        text = page.locator(".st-key-dup-group-1").inner_text()
        assert "chelsea.png" in text and "chelsea-small.jpg" in text and "chelsea-crop.png" in text
        assert "suggested keep" in text
        # thumbnails come from the signed thumbnail route, loaded lazily by the browser; a URL this server did not
        # sign is refused
        imgs = page.locator(".st-key-dup-group-1 img")
        assert imgs.count() == 3 and all(imgs.nth(i).get_attribute("loading") == "lazy" for i in range(3))
        page.wait_for_function("() => [...document.querySelectorAll('.st-key-dup-group-1 img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=60_000)
        src = imgs.first.get_attribute("src")
        assert src.startswith("./thumb?") and page.request.get(app + src[1:]).headers["content-type"] == "image/jpeg"
        assert page.request.get(app + src[1:].replace("s=", "s=0")).status == 404
        page.locator("[data-testid=stDownloadButton]").nth(1).wait_for(timeout=60_000)
        assert "Download CSV" in page.locator("[data-testid=stDownloadButton]").first.inner_text()
        shot(page, f"duplicates-{name}")
        page.close()


def test_explore_click_on_a_point_searches_with_it(browser, app):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(app + "/explore")
    points = page.locator(".st-key-ex_chart g.mark-symbol.role-mark path")  # Vega draws the chart as SVG
    points.first.wait_for(timeout=180_000)
    wait_idle(page)
    assert points.count() == 12
    label = points.nth(3).get_attribute("aria-label") or ""
    points.nth(3).click()
    page.get_by_text("Nearest to").wait_for(timeout=120_000)
    wait_idle(page)
    body = page.inner_text("body")
    assert "#1 · 1.000" in body  # the clicked image itself comes first
    name = body.split("Nearest to ", 1)[1].split()[0]
    assert name in label, (name, label)
    shot(page, "explore-desktop")
    page.close()


def test_other_pages_render(browser, app):
    """Index, Explore and Compare render at phone width (and, for the screenshots, at desktop width): their title
    shown, no exception on the page."""
    from playwright.sync_api import expect

    widths = (("desktop", DESKTOP), ("phone", PHONE)) if SHOTS else (("phone", PHONE),)
    for path, title in (("index", "Index"), ("explore", "Explore"), ("compare", "Compare")):
        for name, vp in widths:
            if (path, name) == ("explore", "desktop"):
                continue  # saved with a clicked point by the Explore test
            page = browser.new_page(viewport=vp)
            page.goto(f"{app}/{path}")
            page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached",
                                   timeout=180_000)
            wait_idle(page)
            expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=60_000)
            expect(page.locator("[data-testid=stException]")).to_have_count(0)
            if SHOTS:
                page.wait_for_timeout(1500)
                wait_idle(page)
                shot(page, f"{path}-{name}")
            page.close()
