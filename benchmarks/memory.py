"""Bounded memory while indexing: peak RSS (indexer + its decoding workers) against images committed, and images/s.

    nice -n 10 .venv/bin/python -m benchmarks.memory --n 100000 --model pixels@16 --work /tmp/lookalike-mem

Images are augmented crops of the scikit-image photos (random position, scale, flip, brightness), written as
128x128 JPEGs (generated once into --work and reused). The indexer runs as ``lookalike index`` in a subprocess;
its memory and that of its DataLoader workers is sampled every 0.5 s with the number of images committed: PSS
summed over the processes (pages shared by the forked workers counted once), the main process's RSS, and the
plain RSS sum (an upper bound that counts shared pages once per process).
The FAISS index itself must grow with the collection (``bytes/vector x n``, see docs/benchmarks.md section 3);
what must not grow is everything else, so the table also shows RSS minus that index size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from lookalike.indexer.store import count_rows


def make_images(folder: Path, n: int, seed: int = 0, size: int = 128) -> None:
    from lookalike.data.photos import load_photo
    from PIL import Image, ImageEnhance

    folder.mkdir(parents=True, exist_ok=True)
    have = sum(len(files) for _, _, files in os.walk(folder))  # images sit in sub-folders of 1,000
    if have >= n:
        return
    photos = [load_photo(p).convert("RGB") for p in ("astronaut", "chelsea", "coffee", "rocket", "coins", "camera",
                                                       "immunohistochemistry", "hubble_deep_field")]
    rng = np.random.default_rng(seed + have)
    for i in range(have, n):
        im = photos[i % len(photos)]
        w, h = im.size
        s = int(rng.integers(48, min(w, h) // 2))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        c = im.crop((x, y, x + s, y + s)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        c = ImageEnhance.Brightness(c).enhance(float(rng.uniform(0.7, 1.3)))
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        c.save(sub / f"a{i:06d}.jpg", quality=85)
        if i % 10000 == 0:
            print(f"generated {i}", file=sys.stderr, flush=True)


def committed(db) -> int:
    return count_rows(db, "files")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--model", default="pixels@16")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=512)
    ap.add_argument("--index-type", default="auto")
    ap.add_argument("--max-memory", default=None, help="index RAM budget passed to `lookalike index` (e.g. 256M)")
    ap.add_argument("--window", type=int, default=10_000, help="report peak RSS per this many images committed")
    ap.add_argument("--work", default="/tmp/lookalike-mem")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import psutil

    work = Path(args.work)
    imgs = work / f"imgs-{args.n}"
    t = time.perf_counter()
    make_images(imgs, args.n)
    gen_s = time.perf_counter() - t
    idx = work / f"idx-{args.model.replace('@', '_')}-{args.n}{'-' + args.max_memory if args.max_memory else ''}"
    if idx.exists():
        import shutil

        shutil.rmtree(idx)
    cmd = [sys.executable, "-m", "lookalike", "index", str(imgs), "--db", str(idx), "--model", args.model, "-q",
           "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size),
           "--index-type", args.index_type] + (["--max-memory", args.max_memory] if args.max_memory else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = psutil.Process(proc.pid)
    samples = []  # (t, pss_total_mb, rss_main_mb, committed, rss_sum_mb)
    last_count, last_count_t = 0, 0.0
    while proc.poll() is None:
        try:
            procs = [p] + p.children(recursive=True)
            mem = [q.memory_full_info() for q in procs]  # PSS: shared (forked) pages counted once
            rss = [m.rss for m in mem]
            pss = sum(m.pss for m in mem)
        except psutil.Error:
            time.sleep(0.2)
            continue
        now = time.perf_counter() - t0
        if now - last_count_t > 2:
            last_count, last_count_t = committed(idx / "metadata.db"), now
        samples.append((round(now, 1), round(pss / 2**20, 1), round(rss[0] / 2**20, 1), last_count, round(sum(rss) / 2**20, 1)))
        if args.out and len(samples) % 60 == 0:  # partial figures survive an interrupted run
            Path(args.out).with_suffix(".samples.json").write_text(json.dumps(samples))
        time.sleep(0.5)
    out, err = proc.communicate()
    total_s = time.perf_counter() - t0
    if proc.returncode:
        print(err[-3000:], file=sys.stderr)
        return 1
    from lookalike.retrieval.embedders import get_embedder

    dim = get_embedder(args.model).dim
    windows = []
    for lo in range(0, args.n, args.window):
        hi = lo + args.window
        ss = [s for s in samples if lo <= s[3] < hi or (hi >= args.n and s[3] >= lo)]
        if not ss:
            continue
        t_lo, t_hi = ss[0][0], ss[-1][0]
        windows.append({"committed": f"{lo}-{min(hi, args.n)}", "peak_pss_mb": max(s[1] for s in ss),
                        "peak_main_rss_mb": max(s[2] for s in ss), "peak_rss_sum_mb": max(s[4] for s in ss),
                        "flat_index_mb_at_end": round(min(hi, args.n) * (4 * dim + 8) / 2**20, 1),
                        "peak_pss_minus_index_mb": round(max(s[1] for s in ss) - min(hi, args.n) * (4 * dim + 8) / 2**20, 1),
                        "img_s": round((min(hi, args.n) - lo) / max(0.1, t_hi - t_lo), 1)})
    res = {"n": args.n, "model": args.model, "dim": dim, "max_memory": args.max_memory, "workers": args.workers, "batch_size": args.batch_size,
           "chunk_size": args.chunk_size, "generate_s": round(gen_s, 1), "index_s": round(total_s, 1),
           "img_s": round(args.n / total_s, 1), "peak_pss_mb": max(s[1] for s in samples),
           "peak_rss_sum_mb": max(s[4] for s in samples), "peak_main_rss_mb": max(s[2] for s in samples),
           "summary": out.strip().splitlines()[-1] if out.strip() else "", "windows": windows}
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".samples.json").write_text(json.dumps(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
