"""Screenshots of each page of the web app for the docs: ``python -m lookalike.ui.screenshots --out docs``.

Builds a demo index (scikit-image photos + 150 CIFAR-10 samples), starts ``lookalike ui`` on a free 127.0.0.1
port and drives Debian's headless Chromium with Playwright. Also prints the search latency the app reports.

``--gallery docs/ui`` instead saves every page (Search with results, the viewer, Index, Explore, Compare,
Duplicates) at desktop (1400x900) and phone (390x844) size, in the light and the dark theme, as
``<page>-<desktop|phone>-<light|dark>.png`` (one screen each, palette-reduced), on an index of the photos, 60
CIFAR-10 samples and a few copies, with the default model.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from PIL import Image

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def build_demo(work: Path) -> tuple[Path, Path, Path]:
    """(images folder, index folder, query file) under ``work``; reuses what exists."""
    from lookalike.data.export import export_dataset
    from lookalike.data.photos import unseen_query, write_photos
    from lookalike.retrieval.engine import Engine

    images, db = work / "images", work / "index"
    if not images.exists():
        write_photos(images / "photos")
        export_dataset("cifar10", images / "cifar10", split="train", limit=150, progress=False)
        (images / "photos" / "notes.jpg").write_bytes(b"a text file renamed to .jpg")
    if not (db / "vectors.faiss").exists():
        with Engine.open(db, model="efficientnet_lite0") as eng:
            print(eng.add([images], progress=False, warn=None).summary())
    return images, db, unseen_query(work / "cat-query.jpg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UIServerError(RuntimeError):
    """``lookalike ui`` exited or did not answer its health check in time."""


def _wait_healthy(url: str, proc: subprocess.Popen, wait_s: float) -> None:
    """Until ``url`` answers its health check; :class:`UIServerError` when ``proc`` exits or ``wait_s`` passes."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UIServerError(f"lookalike ui exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise UIServerError(f"lookalike ui did not answer on {url} within {wait_s:.0f}s")


@contextlib.contextmanager
def ui_server(db: Path, allow_write: bool = False, log: IO | None = None, wait_s: float = 120.0,
              args: Sequence[str] = ()) -> Iterator[str]:
    """``lookalike ui --db DB [args]`` on a free loopback port, once it answers its health check; yields its URL and
    stops its whole process group on exit (``log``: where its output goes, else nowhere). Raises
    :class:`UIServerError` when it exits or does not answer within ``wait_s``."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "lookalike", "ui", "--db", str(db), "--port", str(port), *args]
    proc = subprocess.Popen(cmd + (["--allow-write"] if allow_write else []), stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    try:
        _wait_healthy(url, proc, wait_s)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _write_png(im: Image.Image, path: Path, max_kb: int, palettes: tuple) -> None:
    """``im`` as an optimised PNG, with the first palette size (None: full colour) that fits in ``max_kb``."""
    from PIL import Image
    for colours in palettes:
        out = im if colours is None else im.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        out.save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_kb * 1024:
            break
    path.write_bytes(buf.getvalue())
    print(f"{path}: {im.width}x{im.height}, {len(buf.getvalue()) // 1024} KB", flush=True)


def _save(page, path: Path, max_kb: int = 400) -> None:
    """Full-page PNG, palette-quantised when needed to stay under ``max_kb``."""
    from PIL import Image

    # Streamlit scrolls inside its own container, so "full page" means a viewport as tall as the content
    vp = page.viewport_size
    page.mouse.move(vp["width"] // 2, 5)  # no hover toolbars in the picture
    h = page.evaluate("() => { const m = document.querySelector('[data-testid=stMain]');"
                      " return m ? m.scrollHeight : document.body.scrollHeight; }")
    page.set_viewport_size({"width": vp["width"], "height": int(min(max(h, vp["height"]), 4000))})
    page.wait_for_timeout(1500)
    raw = page.screenshot(full_page=True)
    page.set_viewport_size(vp)
    _write_png(Image.open(io.BytesIO(raw)).convert("RGB"), path, max_kb, (None, 256, 128, 64))


def _idle(page, timeout: int = 300_000) -> None:
    page.wait_for_timeout(500)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached", timeout=timeout)
    page.wait_for_timeout(800)


def shoot(db: Path, query: Path, images: Path, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with ui_server(db, allow_write=True) as url, sync_playwright() as p:  # the Index page updates its folders
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1360, "height": 900})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((url, "data:", "blob:")) else r.abort())

        # Search: upload, results grid, then the latency of a few more searches
        page.goto(url + "/")
        page.wait_for_selector("input[type=file]", state="attached", timeout=300_000)
        page.set_input_files("input[type=file]", str(query))
        page.locator(".st-key-result-1 img").wait_for(timeout=300_000)
        _idle(page)
        _save(page, out / "ui-search.png")
        times = []
        for rank in (2, 3, 4, 2, 3):
            page.locator(f".st-key-result-{rank}").get_by_role("button", name="Search with this").click()
            _idle(page)
            m = re.search(r"results from (\d+) images in (\d+) ms", page.inner_text("body"))
            if m:
                times.append(int(m.group(2)))
        print(f"search latency reported by the app (click a result, {m.group(1) if m else '?'} images): {times} ms")

        # Search with the noisy-query panel: a 32x32 CIFAR-10 image, noise 0.3, DDIM denoising
        cifar = sorted((images / "cifar10").rglob("*.png"))[3]
        page.set_input_files("input[type=file]", str(cifar))
        _idle(page)
        page.get_by_text("Noisy query").first.click()
        slider = page.get_by_role("slider", name="Add Gaussian noise, σ")
        slider.focus()
        for _ in range(6):
            slider.press("ArrowRight")
        _idle(page)
        page.get_by_text("Denoise before searching").first.click()
        _idle(page)
        page.locator(".st-key-result-1 img").wait_for(timeout=300_000)
        _idle(page)
        _save(page, out / "ui-search-noisy.png")

        # Index: update all folders (nothing changed: counts and the skipped file stay)
        page.goto(url + "/index")
        page.get_by_role("button", name="Update all indexed folders").wait_for(timeout=120_000)
        _idle(page)
        page.get_by_role("button", name="Update all indexed folders").click()
        page.get_by_text("unchanged").first.wait_for(timeout=300_000)
        _idle(page)
        _save(page, out / "ui-index.png")

        # Explore: t-SNE coloured by label, the "cat" group's thumbnails
        page.goto(url + "/explore")
        page.get_by_text("t-SNE").first.wait_for(timeout=120_000)
        _idle(page)
        page.get_by_text("t-SNE", exact=True).click()
        _idle(page)
        page.get_by_text("label", exact=True).click()
        _idle(page)
        page.locator(".stSelectbox").first.click()
        page.get_by_role("option", name="cat", exact=True).click()
        _idle(page)
        _save(page, out / "ui-explore.png")

        # Compare: the cat photo against the cropped query under every embedder
        page.goto(url + "/compare")
        page.wait_for_selector("input[type=file]", state="attached", timeout=120_000)
        _idle(page)
        inputs = page.locator("input[type=file]")
        inputs.nth(0).set_input_files(str(images / "photos" / "chelsea.png"))
        _idle(page)
        inputs.nth(1).set_input_files(str(query))
        _idle(page)
        page.get_by_role("button", name="Compare", exact=True).click()
        page.locator(".stDataFrame").wait_for(timeout=600_000)
        _idle(page, 600_000)
        _save(page, out / "ui-compare.png")
        b.close()


GALLERY_SIZES = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}


def build_gallery_demo(work: Path) -> tuple[Path, Path, Path]:
    """(images, index, query): the photos, 60 CIFAR-10 samples, two copies of the cat and a byte copy of the rocket,
    indexed with the default model (which has the calibrated copy score)."""
    import shutil

    from PIL import Image

    from lookalike.data.export import export_dataset
    from lookalike.data.photos import load_photo, unseen_query, write_photos
    from lookalike.retrieval.engine import Engine

    images, db = work / "images", work / "index"
    if not images.exists():
        write_photos(images / "photos")
        export_dataset("cifar10", images / "cifar10", split="train", limit=60, progress=False)
        cat = load_photo("chelsea").convert("RGB")
        (images / "copies").mkdir()
        cat.resize((cat.width // 2, cat.height // 2), Image.Resampling.LANCZOS).save(
            images / "copies" / "chelsea-small.jpg", quality=80)
        cat.crop((20, 15, cat.width - 20, cat.height - 15)).save(images / "copies" / "chelsea-crop.png")
        shutil.copy(images / "photos" / "rocket.png", images / "copies" / "rocket-copy.png")
    if not (db / "vectors.faiss").exists():
        with Engine.open(db) as eng:
            print(eng.add([images], progress=False, warn=None).summary())
    return images, db, unseen_query(work / "cat-query.jpg")


def _shot(page, path: Path, max_kb: int = 180) -> None:
    """One screen as a PNG, palette-reduced until it is under ``max_kb``."""
    from PIL import Image

    page.mouse.move(2, 2)  # no hover toolbars in the picture
    page.wait_for_timeout(600)
    _write_png(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), path, max_kb, (None, 128, 64, 32))


def gallery(db: Path, query: Path, images: Path, out: Path, chromium: str) -> None:
    """Every page, desktop and phone, light and dark (see the module's doc)."""
    from playwright.sync_api import sync_playwright

    with ui_server(db, allow_write=True) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            for device, vp in GALLERY_SIZES.items():
                phone = device == "phone"
                page = b.new_page(viewport=vp, color_scheme=scheme, is_mobile=phone, has_touch=phone,
                                  device_scale_factor=1)
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((url, "data:", "blob:"))
                           else r.abort())
                name = f"{device}-{scheme}"
                page.goto(url + "/")
                page.wait_for_selector(".st-key-q_upload input[type=file]", state="attached", timeout=300_000)
                page.set_input_files(".st-key-q_upload input[type=file]", str(query))
                page.locator(".st-key-result-1 img").wait_for(timeout=300_000)
                _idle(page)
                if phone:  # the grid, not the upload box
                    page.locator(".st-key-result-1").scroll_into_view_if_needed()
                _shot(page, out / f"search-{name}.png")
                page.locator(".st-key-result-1").get_by_role("button", name="Open original").click()
                page.get_by_role("dialog").locator("img").wait_for(timeout=120_000)
                _idle(page)
                _shot(page, out / f"viewer-{name}.png")
                page.keyboard.press("Escape")
                for path in ("index", "explore", "compare", "duplicates"):
                    page.goto(f"{url}/{path}")
                    page.wait_for_selector("[data-testid=stMain] h1", timeout=300_000)
                    if path == "duplicates":
                        page.locator(".st-key-dup-group-1 img").first.wait_for(timeout=300_000)
                    if path == "explore":
                        page.locator(".st-key-ex_chart").first.wait_for(timeout=300_000)
                    _idle(page)
                    _shot(page, out / f"{path}-{name}.png")
                page.close()
        b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--work", default="/tmp/lookalike-ui-demo")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--gallery", metavar="DIR", default=None,
                    help="save every page, desktop and phone, light and dark, into DIR (e.g. docs/ui)")
    args = ap.parse_args(argv)
    if args.gallery:
        out = Path(args.gallery)
        out.mkdir(parents=True, exist_ok=True)
        images, db, query = build_gallery_demo(Path(args.work + "-gallery"))
        gallery(db, query, images, out, args.chromium)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, db, query = build_demo(Path(args.work))
    shoot(db, query, images, out, args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
