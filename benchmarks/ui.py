"""The web UI in a real browser (issue 24): search round trip, Duplicates page 1, Keep click, and an indexing job that
survives page changes and a reload.

    .venv/bin/python -m benchmarks.ui --work /tmp/lookalike-ui-bench --out benchmarks/results/ui.json

Builds (once, kept in --work) an index of --images generated images: seeded random crops of the scikit-image photos
at 64-160 px, a tenth of them also saved as a half-size JPEG copy (so the Duplicates page has groups), with the
default model. Starts ``lookalike ui --allow-write`` on 127.0.0.1 and drives headless Debian Chromium (Playwright):

* search round trip: from giving the upload to every result thumbnail decoded on the page (--queries uploads of
  crops the index has never seen; a new one each time, so nothing comes from a cache); median and max;
* Duplicates page 1: from navigation to the first group's thumbnails shown, first visit (the groups are computed)
  and a second visit (cached);
* Keep click: from the click on a Keep box to the group redrawn with the box flipped (median of --clicks);
* indexing job: --job-images new images are written under the indexed folder, "Update all indexed folders" is
  pressed, then the browser goes to Search, to Explore, reloads, and comes back to Index, where it waits for the
  job's end; reports whether the job was still running after the page changes and its time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "coins", "camera", "moon", "clock", "hubble_deep_field",
          "immunohistochemistry")


def crops(folder: Path, n: int, seed: int, copies_every: int = 0) -> list[Path]:
    """``n`` seeded random crops (64-160 px) of the photos; every ``copies_every``-th also as a half-size JPEG."""
    from lookalike.data.photos import load_photo

    rng = np.random.default_rng(seed)
    photos = [load_photo(p).convert("RGB") for p in PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        s = int(rng.integers(48, min(im.size) // 2))
        x, y = int(rng.integers(0, im.width - s)), int(rng.integers(0, im.height - s))
        side = int(rng.integers(64, 161))
        c = im.crop((x, y, x + s, y + s)).resize((side, side), Image.Resampling.BICUBIC)
        p = folder / f"c{seed}-{i:05d}.png"
        c.save(p)
        out.append(p)
        if copies_every and i % copies_every == 0:
            c.resize((side // 2, side // 2)).save(folder / f"c{seed}-{i:05d}-small.jpg", quality=80)
    return out


def build(work: Path, n: int, model: str) -> Path:
    db = work / "index"
    if (db / "lookalike.json").is_file():
        return db
    from lookalike.retrieval.engine import Engine

    t0 = time.perf_counter()
    crops(work / "library" / "base", n - n // 10, seed=1, copies_every=10)
    with Engine.open(db, model=model) as eng:
        rep = eng.add([work / "library"], progress=True, warn=None)
    print(f"built {db}: {rep.summary()} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return db


def wait_idle(page, timeout_ms: int = 600_000) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached",
                           timeout=timeout_ms)


RERUN_WATCH = """() => { window.__lookalikeRerun = new Promise(done => {
    const app = document.querySelector('[data-testid=stApp]'); const t0 = performance.now(); let seen = false;
    const obs = new MutationObserver(() => { const s = app.getAttribute('data-test-script-state');
        if (s === 'running') seen = true;
        if (seen && s === 'notRunning') { obs.disconnect(); done(performance.now() - t0); } });
    obs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    setTimeout(() => { obs.disconnect(); done(-1); }, 60000); }); }"""
ALL_THUMBS = """(n) => { const imgs = [...document.querySelectorAll('.st-key-results img')];
    return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lookalike-ui-bench"))
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--job-images", type=int, default=4000)
    ap.add_argument("--model", default="ntxent-copies")
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--no-job", action="store_true", help="skip the indexing job (the index stays as built)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from lookalike.ui.screenshots import ui_server

    args.work.mkdir(parents=True, exist_ok=True)
    db = build(args.work, args.images, args.model)
    queries = crops(args.work / "queries", args.queries, seed=99)
    log = open(args.work / "server.log", "w")
    import sqlite3

    con = sqlite3.connect(db / "metadata.db")
    indexed = con.execute("select count(*) from images").fetchone()[0]
    con.close()
    out: dict = {"images": indexed, "model": args.model, "cpus": os.cpu_count(),
                 "load_avg_start": os.getloadavg()[0]}
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(ui_server(db, allow_write=True, log=log))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector(".st-key-q_upload input[type=file]", state="attached", timeout=600_000)
            wait_idle(page)
            # --- search round trip (the first upload loads the model's caches: not counted)
            times = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                page.set_input_files(".st-key-q_upload input[type=file]", str(q))
                page.wait_for_function(f"() => document.body.innerText.includes('Query: {q.name}')", timeout=600_000)
                n = page.locator("[class*=st-key-result-]").count()
                page.wait_for_function(ALL_THUMBS, arg=max(1, n), timeout=600_000)
                wait_idle(page)
                dt = time.perf_counter() - t0
                if i:
                    times.append(dt)
            out["search_round_trip_s"] = {"median": statistics.median(times), "max": max(times), "n": len(times)}
            print(f"search round trip: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
                  f"({len(times)} uploads)", flush=True)
            # --- Duplicates page 1, first and second visit
            dup = {}
            for visit in ("first", "second"):
                page.goto(url + "/index")
                wait_idle(page)
                t0 = time.perf_counter()
                page.goto(url + "/duplicates")
                page.locator(".st-key-dup-group-1 img").first.wait_for(timeout=600_000)
                page.wait_for_function("() => [...document.querySelectorAll('.st-key-dup-group-1 img')]"
                                       ".every(i => i.complete && i.naturalWidth > 0)", timeout=600_000)
                dup[visit] = time.perf_counter() - t0
                wait_idle(page)
            out["duplicates_page1_s"] = dup
            print(f"Duplicates page 1: first visit {dup['first']:.2f} s, second {dup['second']:.2f} s", flush=True)
            # --- Keep clicks: from the click to the end of the rerun it causes (the group's fragment)
            clicks = []
            boxes = page.locator(".st-key-dup-group-1 [data-testid=stCheckbox]")
            for i in range(args.clicks):
                page.evaluate(RERUN_WATCH)
                boxes.nth(i % max(1, boxes.count())).locator("label").click()
                ms = page.evaluate("() => window.__lookalikeRerun")
                if ms >= 0:
                    clicks.append(ms / 1000.0)
                wait_idle(page)
            out["keep_click_s"] = {"median": statistics.median(clicks), "max": max(clicks), "n": len(clicks)}
            print(f"Keep click: median {statistics.median(clicks):.3f} s, max {max(clicks):.3f} s", flush=True)
            # --- an indexing job through page changes and a reload
            if not args.no_job:
                new = args.work / "library" / f"job-{int(time.time())}"
                t_gen = time.perf_counter()
                crops(new, args.job_images, seed=int(time.time()) % 100000)
                print(f"wrote {args.job_images} new images in {time.perf_counter() - t_gen:.0f} s", flush=True)
                page.goto(url + "/index")
                update = page.get_by_role("button", name="Update all indexed folders")
                update.wait_for(timeout=600_000)
                wait_idle(page)
                t0 = time.perf_counter()
                update.click()
                page.locator(".st-key-index-job").get_by_text("Runs on the server").wait_for(timeout=600_000)
                page.goto(url + "/search")
                try:
                    page.locator("[data-testid=stSidebar]").get_by_text("Indexing").wait_for(timeout=30_000)
                    running_on_search = True
                except Exception:  # noqa: BLE001 - it may already have ended
                    running_on_search = False
                page.goto(url + "/explore")
                page.wait_for_selector("[data-testid=stMain] h1", timeout=600_000)
                page.reload()
                page.wait_for_selector("[data-testid=stMain] h1", timeout=600_000)
                page.goto(url + "/index")
                still = page.locator(".st-key-index-job").get_by_text("Runs on the server")
                try:
                    still.wait_for(timeout=30_000)
                    running_after = True
                except Exception:  # noqa: BLE001 - it may already have ended
                    running_after = False
                done = page.locator(".st-key-index-job [data-testid=stAlertContentSuccess]")
                done.wait_for(timeout=3_600_000)
                text = done.inner_text()
                out["index_job"] = {"images": args.job_images, "seconds": time.perf_counter() - t0,
                                    "running_after_two_page_changes_and_reload": running_after,
                                    "sidebar_showed_it_on_search": bool(running_on_search),
                                    "finished": f"indexed {args.job_images}," in text, "summary": text}
                print(f"indexing job: {args.job_images} images, {out['index_job']['seconds']:.0f} s, still running after "
                      f"two page changes and a reload: {running_after}; finished: {out['index_job']['finished']} "
                      f"({text.strip()[:160]})", flush=True)
            browser.close()
    finally:
        out["load_avg_end"] = os.getloadavg()[0]
        stack.close()
        log.close()
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
