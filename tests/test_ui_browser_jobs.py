"""Headless Chromium (issue 24): an indexing job started on the Index page goes on through page changes, a reload
and a second tab, and finishes; no page of the UI, nor the API's /docs and /redoc, sends a request beyond 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import free_port, ui_server, wait_idle
from lookalike.data.photos import photo_crops

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1400, "height": 900}
NEW_IMAGES = 240


@pytest.fixture(scope="module")
def job_index(tmp_path_factory, photo_dir):
    """The ten photos indexed with efficientnet_lite0 (a real model: embedding takes long enough to follow)."""
    from lookalike.retrieval.engine import Engine

    root = tmp_path_factory.mktemp("uijobs")
    images = root / "images"
    shutil.copytree(photo_dir, images / "photos")
    with Engine.open(root / "index", model="efficientnet_lite0") as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    return root / "index", images


def guard(page, allowed: str) -> list[str]:
    """Abort and record every request the page makes to anything but ``allowed`` (data: and blob: URLs stay local)."""
    outside: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(allowed) or url.startswith(("data:", "blob:")):
            return r.continue_()
        outside.append(url)
        return r.abort()

    page.route("**/*", route)
    return outside


def test_no_request_leaves_the_machine_on_any_page_or_the_api_docs(browser, tmp_path, photo_dir):
    from lookalike.retrieval.engine import Engine

    db = tmp_path / "index"
    with Engine.open(db, model="pixels") as eng:  # a model that loads at once: the pages, not the model, matter
        eng.add([photo_dir], progress=False, workers=0, warn=None)
    with ui_server(db) as url:
        page = browser.new_page(viewport=DESKTOP)
        outside = guard(page, url)
        for path in ("/", "/index", "/explore", "/compare", "/duplicates"):
            page.goto(url + path)
            page.wait_for_selector("[data-testid=stMain] h1", timeout=180_000)
            wait_idle(page)
            page.wait_for_load_state("networkidle")
        assert not outside, f"the UI tried to reach beyond 127.0.0.1: {outside[:5]}"
        page.close()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--db", str(db), "--port", str(port)],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "lookalike serve exited"
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "lookalike serve did not answer /health within 120 s"
                time.sleep(0.25)
        page = browser.new_page(viewport=DESKTOP)
        outside = guard(page, base)
        page.goto(base + "/docs")
        page.locator(".swagger-ui .opblock").first.wait_for(timeout=60_000)  # rendered from the served bundle
        assert page.locator(".swagger-ui .opblock-summary-path", has_text="/jobs/{job_id}").count() >= 1
        page.wait_for_load_state("networkidle")
        page.goto(base + "/redoc")
        page.get_by_text("Find indexed images like").first.wait_for(timeout=60_000)  # an operation's summary
        page.wait_for_load_state("networkidle")
        assert not outside, f"the API docs tried to reach beyond 127.0.0.1: {outside[:5]}"
        page.close()
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.slow
def test_index_job_survives_page_changes_a_reload_and_a_second_tab(browser, job_index):
    db, images = job_index
    photo_crops(images / "more", NEW_IMAGES, seed=11, size=96)
    with ui_server(db, "--allow-write") as url:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url + "/index")
        update = page.get_by_role("button", name="Update all indexed folders")
        update.wait_for(timeout=180_000)
        wait_idle(page)
        update.click()
        job = page.locator(".st-key-index-job")
        job.get_by_text("Runs on the server").wait_for(timeout=120_000)  # the live panel of a running job
        # leave the page: the job goes on, and the sidebar of every page says so
        page.goto(url + "/search")
        page.locator("[data-testid=stSidebar]").get_by_text("Indexing").wait_for(timeout=60_000)
        page.goto(url + "/explore")
        page.wait_for_selector("[data-testid=stMain] h1", timeout=180_000)
        page.reload()
        page.wait_for_selector("[data-testid=stMain] h1", timeout=180_000)
        # a second tab and the first one, back on the Index page, both follow the same job to its end
        other = browser.new_page(viewport=DESKTOP)
        for p in (page, other):
            p.goto(url + "/index")
        for p in (page, other):
            done = p.locator(".st-key-index-job [data-testid=stAlertContentSuccess]")
            done.wait_for(timeout=600_000)
            assert f"indexed {NEW_IMAGES}," in done.inner_text()
            wait_idle(p)
            metric = p.locator("[data-testid=stMetric]", has_text="Images")
            assert metric.locator("[data-testid=stMetricValue]").inner_text().strip() == str(10 + NEW_IMAGES)
            assert "unfinished" not in p.locator("[data-testid=stMain]").inner_text()
        other.close()
        page.close()
