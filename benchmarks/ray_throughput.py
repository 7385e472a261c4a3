"""Indexing throughput: the single-process path vs Ray Data actors (local instance; optionally an existing cluster).

    .venv/bin/python -m benchmarks.ray_throughput --n 1000 --model efficientnet_lite0@128 --workers 2 --cluster

Each mode indexes the same generated JPEGs into a fresh index through the CLI (``lookalike index``), in a
subprocess; reported: wall time (start-up included), the embedding phase's images/s (from the run summary),
and whether the resulting sha256 sets agree. ``--cluster`` also starts ``ray start --head --block`` on
this machine and indexes through ``--address`` (the address it prints), then stops that head.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def run(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t, r.stdout.strip().splitlines()[-1]


def shas(idx: Path) -> set[str]:
    con = sqlite3.connect(idx / "metadata.db")
    out = {r[0] for r in con.execute("select sha256 from images")}
    con.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default="efficientnet_lite0@128")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cluster", action="store_true", help="also run against a 'ray start --head' cluster by address")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from benchmarks.memory import make_images

    work = Path(tempfile.mkdtemp(prefix="lookalike-ray-"))
    rows = []
    head = None
    try:
        imgs = work / "imgs"
        make_images(imgs, args.n)
        base = [sys.executable, "-m", "lookalike", "index", str(imgs), "--model", args.model, "-q",
                "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
        modes = [("local (DataLoader, 1 process + workers)", []), (f"ray local instance, {args.workers} actors", ["--executor", "ray"])]
        if args.cluster:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            # a head of our own (--block, in its own session), stopped by terminating it: never `ray stop`, which
            # would stop every Ray process on the machine
            head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                                     "--port", str(port), "--num-cpus", str(args.workers + 1),
                                     "--include-dashboard", "false", "--disable-usage-stats"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            address = None
            for line in head.stdout:  # the address the head advertises, as printed by `ray start`
                if m := re.search(r"ray start --address='([^']+)'", line):
                    address = m.group(1)
                    break
            if address is None:
                raise SystemExit("ray start --head failed")
            threading.Thread(target=head.stdout.read, daemon=True).start()
            modes.append((f"ray existing cluster by --address, {args.workers} actors", ["--executor", "ray", "--address", address]))
        ref = None
        for name, extra in modes:
            idx = work / f"idx-{len(rows)}"
            wall, summary = run(base + ["--db", str(idx)] + extra)
            m = re.search(r"\(([\d.]+) img/s\)", summary)
            s = shas(idx)
            ref = ref or s
            rows.append({"mode": name, "images": args.n, "model": args.model, "wall_s": round(wall, 1),
                         "wall_img_s": round(args.n / wall, 1), "embed_phase_img_s": float(m.group(1)) if m else None,
                         "same_images_as_local": s == ref, "summary": summary})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        if head:
            head.terminate()
            head.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    print("| mode | images | model | wall s (start-up included) | img/s (wall) | img/s (embedding phase) | same images |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['images']} | {r['model']} | {r['wall_s']} | {r['wall_img_s']} | {r['embed_phase_img_s']} | {r['same_images_as_local']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
