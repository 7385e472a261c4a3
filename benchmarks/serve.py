"""HTTP API latency and throughput: `lookalike serve` on 127.0.0.1 with 1 and 8 concurrent clients, on the demo index
(default model) and on a 100k-image index (a cheap model), and with 8 clients while an index update runs.

    nice -n 10 .venv/bin/python -m benchmarks.serve --work /tmp/lookalike-serve --out benchmarks/results/serve.json

Each request is a multipart POST /search of the demo query (a 256x192 JPEG of a photo the index has never seen,
k=10), timed end to end by the client (connection kept alive, one httpx client per thread). The server is a
`lookalike serve` subprocess (1 torch thread per query). For reference, the same query through the Python API in
this process (no HTTP) is timed too, alternating with the model forward alone. Under indexing: generated images are added to the demo folder, POST /index
starts the update and 8 clients search until it ends; every non-200 answer or transport error counts as an error.
Traffic is 127.0.0.1 only and bounded by --requests and --seconds per phase. Generated data is kept in --work
and reused.

    nice -n 10 .venv/bin/python -m benchmarks.serve --soak 20000 --soak-seconds 900 --out /tmp/soak.json

``--soak N`` (only this): N mixed requests from 16 clients (uploads, searches by path and by vector, thumbnails,
originals, /status, /health, and bad requests that must get their 4xx) against an index of generated images while
index updates run back to back (each adds new images), bounded by --soak-seconds. A warm-up of N/20 requests under
the same concurrency comes first (no updates). It reports p50/p99 per kind, unexpected answers (errors) and the
server's RSS idle, after the warm-up (start; one index update included), every 5 s and at the end. Target: no errors, RSS growth <= 10%.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

PY = sys.executable


def lookalike(*args: str) -> None:
    subprocess.run([PY, "-m", "lookalike", *args], check=True)


def demo_index(work: Path) -> tuple[Path, Path]:
    """(images, index) of `make demo`'s collection with the default model (built once, updated incrementally)."""
    from lookalike.demo import build_demo_images

    images = work / "demo-images"
    if not images.exists():
        build_demo_images(images)
    shutil.rmtree(images / "serve-bench-update", ignore_errors=True)  # left by an earlier run's update phase
    lookalike("index", str(images), "--db", str(work / "demo-index"), "-q")
    return images, work / "demo-index"


def big_index(work: Path, n: int, model: str) -> Path:
    """An index of ``n`` generated small JPEGs (benchmarks/memory.py's crops) with ``model``."""
    from benchmarks.memory import make_images

    images = work / f"imgs-{n}"
    make_images(images, n, size=32)
    db = work / f"index-{model.replace('@', '_')}-{n}"
    lookalike("index", str(images), "--db", str(db), "--model", model, "-q", "--workers", "2")
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `lookalike serve` subprocess on a free 127.0.0.1 port, stopped on exit."""

    def __init__(self, db: Path, allow_write: bool = False, wait_s: float = 600) -> None:
        import httpx

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [PY, "-m", "lookalike", "serve", "--db", str(db), "--port", str(self.port)] + (["--allow-write"] if allow_write else [])
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve: the server exited with code {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > wait_s:
                self.stop()
                raise SystemExit(f"serve: no answer on {self.base}/health within {wait_s:.0f} s")
            time.sleep(0.25)
        self.start_s = time.monotonic() - t0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def load(base: str, query: bytes | None, clients: int, requests: int, seconds: float, until=None) -> dict:
    """``clients`` threads POST /search (GET /health when ``query`` is None) until ``requests`` are sent,
    ``seconds`` pass, or ``until()`` is true."""
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    count = itertools.count()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            while time.monotonic() < stop_at and next(count) < requests and not (until and until()):
                t = time.perf_counter()
                try:
                    r = c.get("/health") if query is None else \
                        c.post("/search", files={"image": ("query.jpg", query, "image/jpeg")}, data={"k": "10"})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                lat.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat) if lat else np.asarray([np.nan])
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "error_examples": errors[:3],
            "p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "throughput_rps": round(len(lat) / wall, 1), "seconds": round(wall, 1)}


def in_process(db: Path, query: Path, n: int) -> list[dict]:
    """The same query through Engine.search in this process (no HTTP), and the model forward alone; 1 torch thread."""
    import torch

    from lookalike.retrieval.engine import Engine

    torch.set_num_threads(1)
    with Engine.open(db, create=False) as eng:
        eng.search(query, k=10)
        img, _ = eng.load_query(query)
        steps = {"Engine.search in-process (no HTTP)": lambda: eng.search(query.read_bytes(), k=10),
                 "model forward alone (decoded query)": lambda: eng.embed([img])}
        lat: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(n):  # alternated, so that both see the same load
            for name, step in steps.items():
                t = time.perf_counter()
                step()
                lat[name].append((time.perf_counter() - t) * 1000)
    return [{"phase": name, "clients": 1, "requests": n, "errors": 0, "p50_ms": round(float(np.percentile(v, 50)), 1),
             "p99_ms": round(float(np.percentile(v, 99)), 1), "throughput_rps": round(n / (sum(v) / 1000), 1)}
            for name, v in lat.items()]


def phases(label: str, db: Path, query: bytes, args, rows: list[dict], meta: dict) -> None:
    import httpx

    with Server(db) as srv:
        st = httpx.get(f"{srv.base}/status", timeout=60).json()
        meta[label] = {"images": st["images"], "model": st["model"], "factory": st["factory"], "dim": st["dim"],
                       "server_start_s": round(srv.start_s, 1)}
        load(srv.base, query, 1, args.warmup, args.seconds)
        if label == "demo":
            rows.append({"index": label, "phase": "GET /health (HTTP alone)", **load(srv.base, None, 1, args.requests, args.seconds)})
            print(json.dumps(rows[-1]), flush=True)
        for clients in (1, 8):
            row = load(srv.base, query, clients, args.requests * (1 if clients == 1 else 2), args.seconds)
            rows.append({"index": label, "phase": "search", **row})
            print(json.dumps(rows[-1]), flush=True)


def update_phase(images: Path, db: Path, query: bytes, args, rows: list[dict]) -> None:
    """8 clients searching while POST /index adds ``args.update_images`` new images to the demo index."""
    import httpx
    from benchmarks.memory import make_images

    extra = images / "serve-bench-update"
    make_images(extra, args.update_images, seed=123, size=128)
    with Server(db, allow_write=True) as srv:
        load(srv.base, query, 1, args.warmup, args.seconds)
        before = httpx.get(f"{srv.base}/status", timeout=60).json()["images"]
        r = httpx.post(f"{srv.base}/index", timeout=60)
        assert r.status_code == 202, r.text
        state = {"job": r.json()}

        def done() -> bool:
            return state["job"]["state"] != "running"

        def poll() -> None:
            with httpx.Client(base_url=srv.base, timeout=60) as c:
                while not done():
                    time.sleep(0.5)
                    state["job"] = c.get("/index").json()

        poller = threading.Thread(target=poll)
        poller.start()
        row = load(srv.base, query, 8, 10**9, args.update_seconds, until=done)
        poller.join(args.update_seconds)
        job = state["job"]
        after = httpx.get(f"{srv.base}/status", timeout=60).json()["images"]
        rows.append({"index": "demo", "phase": "search while indexing", **row, "job": job["state"],
                     "job_summary": job.get("summary") or job.get("error"), "images_before": before, "images_after": after})
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(extra)
    lookalike("index", str(images), "--db", str(db), "-q")  # back to the demo collection for the next run


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def soak(work: Path, query: bytes, n: int, seconds: float, clients: int = 16, model: str = "pixels@16",
         updates: bool = True) -> dict:
    """``n`` mixed requests from ``clients`` threads while index updates run back to back; figures per kind."""
    import random

    import httpx
    from benchmarks.memory import make_images

    images = work / "soak-images"
    shutil.rmtree(images / "added", ignore_errors=True)
    make_images(images / "base", 300, seed=7, size=96)
    db = work / f"soak-index-{model.replace('@', '_')}"
    lookalike("index", str(images), "--db", str(db), "--model", model, "-q", "--workers", "1")
    with Server(db, allow_write=True) as srv:
        with httpx.Client(base_url=srv.base, timeout=60) as c:
            hits = c.post("/search", files={"image": ("q.jpg", query, "image/jpeg")}, data={"k": "50"}).json()["results"]
            vec_dim = c.get("/status").json()["dim"]
            for _ in range(20):  # warm-up of every kind before the first RSS figure
                c.post("/search", json={"path": hits[0]["path"], "k": 5})
                c.get(f"/images/{hits[0]['id']}/thumbnail")
        rss_idle = _rss(srv.proc.pid)
        ids = [h["id"] for h in hits]
        paths = [h["path"] for h in hits]
        kinds = {
            "upload": lambda c, r: c.post("/search", files={"image": ("q.jpg", query, "image/jpeg")}, data={"k": "10"}),
            "by path": lambda c, r: c.post("/search", json={"path": r.choice(paths), "k": 10}),
            "by vector": lambda c, r: c.post("/search", json={"vector": [r.random() for _ in range(vec_dim)], "k": 10}),
            "thumbnail": lambda c, r: c.get(f"/images/{r.choice(ids)}/thumbnail", params={"size": r.choice([64, 256])}),
            "original": lambda c, r: c.get(f"/images/{r.choice(ids)}"),
            "status": lambda c, r: c.get("/status"),
            "health": lambda c, r: c.get("/health"),
            "bad k": lambda c, r: c.post("/search", json={"path": paths[0], "k": 0}),
            "bad image": lambda c, r: c.post("/search", files={"image": ("q.jpg", b"not an image", "image/jpeg")}),
            "bad id": lambda c, r: c.get("/images/99999999999999999999"),
        }
        expected = {"bad k": 422, "bad image": 400, "bad id": 422}
        weights = [30, 15, 10, 15, 5, 5, 5, 5, 5, 5]
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        errors: list[str] = []
        count = itertools.count()
        stop_at = time.monotonic() + seconds
        runs = {"runs": 0, "failed": 0, "added": 0}
        done = threading.Event()

        def updater() -> None:  # index updates back to back, each with new images, while the load runs
            with httpx.Client(base_url=srv.base, timeout=60) as c:
                while not done.is_set():
                    batch = images / "added" / f"b{runs['runs']:04d}"
                    make_images(batch, 40, seed=1000 + runs["runs"], size=96)
                    runs["added"] += 40
                    if c.post("/index").status_code != 202:
                        errors.append("POST /index refused")
                        return
                    while not done.is_set():
                        job = c.get("/index").json()
                        if job["state"] != "running":
                            runs["runs"] += 1
                            runs["failed"] += job["state"] != "done"
                            break
                        time.sleep(0.2)

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=srv.base, timeout=120) as c:
                last = time.perf_counter()
                while time.monotonic() < stop_at and next(count) < n:
                    kind = rng.choices(list(kinds), weights)[0]
                    t = time.perf_counter()
                    idle, last = t - last, t
                    try:
                        r = kinds[kind](c, rng)
                    except httpx.HTTPError as exc:
                        errors.append(f"{kind}: {exc!r} (the client's connection was idle {idle:.2f} s before)")
                        continue
                    finally:
                        last = time.perf_counter()
                    if r.status_code != expected.get(kind, 200):
                        errors.append(f"{kind}: {r.status_code} {r.text[:160]}")
                        continue
                    lat[kind].append((time.perf_counter() - t) * 1000)

        def run_clients(total: int) -> float:
            nonlocal count
            count = itertools.count()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i + total,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - t0

        # warm-up under the same concurrency (every thread of the server pool allocates its buffers), with one index
        # update when updates run (the first imports the indexing code)
        soak_n = n
        n = max(clients * 20, soak_n // 20)
        if updates:
            make_images(images / "added" / "warm", 40, seed=999, size=96)
            with httpx.Client(base_url=srv.base, timeout=60) as c:
                assert c.post("/index").status_code == 202
                run_clients(1)
                while c.get("/index").json()["state"] == "running":
                    time.sleep(0.2)
        run_clients(1)
        warm_errors = len(errors)
        for v in lat.values():
            v.clear()
        n = soak_n
        rss_start = _rss(srv.proc.pid)
        samples: list[tuple[float, int]] = []

        def sampler() -> None:
            t = time.perf_counter()
            while not done.is_set():
                samples.append((round(time.perf_counter() - t, 1), round(_rss(srv.proc.pid) / 2**20)))
                done.wait(5)

        stop_at = time.monotonic() + seconds
        samp = threading.Thread(target=sampler)
        samp.start()
        up = threading.Thread(target=updater) if updates else None
        if up:
            up.start()
        wall = run_clients(2)
        done.set()
        if up:
            up.join(120)
        samp.join(10)
        rss_end = _rss(srv.proc.pid)
        status = httpx.get(f"{srv.base}/status", timeout=60).json()
    every = np.asarray([v for vs in lat.values() for v in vs] or [np.nan])
    def pct(a) -> dict:
        return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1)}

    return {"clients": clients, "requests": int(sum(len(v) for v in lat.values())) + len(errors), "answered": int(every.size),
            "errors": len(errors), "error_examples": errors[:5], "seconds": round(wall, 1),
            "throughput_rps": round(every.size / wall, 1), **pct(every),
            "per_kind": {k: {"n": len(v), **pct(np.asarray(v or [np.nan]))} for k, v in lat.items()},
            "index_updates": runs, "images_at_end": status["images"],
            "rss_idle_mb": round(rss_idle / 2**20), "warmup_errors": warm_errors,
            "rss_start_mb": round(rss_start / 2**20), "rss_end_mb": round(rss_end / 2**20),
            "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1), "rss_samples_mb": samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/lookalike-serve")
    ap.add_argument("--big", type=int, default=100_000, help="images in the large index (0: skip it)")
    ap.add_argument("--big-model", default="pixels@16")
    ap.add_argument("--requests", type=int, default=200, help="requests per phase with 1 client (8 clients: twice this)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60, help="time limit per phase")
    ap.add_argument("--update-images", type=int, default=300, help="new images indexed during the update phase")
    ap.add_argument("--update-seconds", type=float, default=600, help="time limit of the update phase")
    ap.add_argument("--out", default=None)
    ap.add_argument("--soak", type=int, default=0, metavar="N", help="only the soak test: N mixed requests")
    ap.add_argument("--soak-seconds", type=float, default=900, help="time limit of the soak test")
    ap.add_argument("--soak-model", default="pixels@16")
    ap.add_argument("--soak-no-update", action="store_true", help="the soak test without index updates")
    args = ap.parse_args(argv)
    from lookalike.data.photos import unseen_query

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    query_path = unseen_query(work / "query.jpg")
    query = query_path.read_bytes()
    if args.soak:
        res = soak(work, query, args.soak, args.soak_seconds, model=args.soak_model, updates=not args.soak_no_update)
        text = json.dumps(res, indent=1)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0 if res["errors"] == 0 and res["rss_growth_pct"] <= 10 else 1
    rows: list[dict] = []
    meta: dict = {}
    images, demo = demo_index(work)
    for row in in_process(demo, query_path, args.requests // 2):
        rows.append({"index": "demo", **row})
        print(json.dumps(rows[-1]), flush=True)
    phases("demo", demo, query, args, rows, meta)
    update_phase(images, demo, query, args, rows)
    if args.big:
        t = time.perf_counter()
        big = big_index(work, args.big, args.big_model)
        meta["big_build_s"] = round(time.perf_counter() - t, 1)
        phases(f"{args.big // 1000}k", big, query, args, rows, meta)

    print("\n| index | images | model | FAISS | phase | clients | requests | errors | p50 ms | p99 ms | req/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = meta.get(r["index"], {})
        print(f"| {r['index']} | {m.get('images', '')} | {m.get('model', '')} | {m.get('factory', '')} | {r['phase']} | "
              f"{r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "meta": meta, "query": {"file": "demo query",
                                              "bytes": len(query)}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
