"""Start-up and query latency of the command line: ``lookalike --help``, a cold ``lookalike search`` on an index
of ``--n`` photos (a new process each time, the compiled model cached), and the warm ``Engine.search`` p50 of
indexed photos (each finds itself) and of photos that are not indexed, for each ``--views`` setting (the
default ``auto``; ``none`` never) in the same run.

    python -m benchmarks.startup --n 300 --runtimes openvino torch
    python -m benchmarks.startup --lookalike /path/to/core-venv/bin/lookalike --runtimes auto --views auto
        # the same figures for another install's command (the core install: no torch), on an index built here

The index is built once (800x600 JPEG photos, efficientnet_lite0); each runtime then searches it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.indexing import make_photos


def wall(cmd: list[str], runs: int) -> tuple[float, list[float]]:
    """Median wall seconds of a command (and each run); it must succeed."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="photos in the index")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--runtimes", nargs="+", default=["openvino", "torch"])
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (medians reported)")
    ap.add_argument("--queries", type=int, default=30, help="warm searches for the p50")
    ap.add_argument("--views", nargs="+", default=["auto", "none"], choices=["auto", "none", "mirror", "rot"],
                    help="query views to time, each in the same run (auto: the default)")
    ap.add_argument("--lookalike", default=None, metavar="EXE",
                    help="time this lookalike command (another install, e.g. a core venv's) instead of this Python's")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from lookalike.retrieval.engine import Engine

    exe = [args.lookalike] if args.lookalike else [sys.executable, "-m", "lookalike"]
    out_exe = " ".join(exe)
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-startup-"))
    out: dict = {"n": args.n, "model": args.model, "runs": args.runs, "command": out_exe}
    try:
        make_photos(tmp / "imgs", args.n)
        from lookalike.data.photosets import generated_scene

        rng = np.random.default_rng(1)
        (tmp / "other").mkdir()
        others = []  # pictures of nothing indexed: generated scenes
        for i in range(args.queries):
            others.append(tmp / "other" / f"scene{i:03d}.jpg")
            generated_scene(rng, (800, 600)).save(others[-1], quality=90)
        with Engine.open(tmp / "idx", model=args.model, runtime="auto" if args.lookalike else args.runtimes[0]) as eng:
            eng.add([tmp / "imgs"], progress=False)
        out["help_s"], out["help_runs"] = wall(exe + ["--help"], args.runs)
        query = str(tmp / "imgs" / "img00007.jpg")
        out["runtimes"] = []
        for runtime in args.runtimes:
            for views in args.views:
                cold, cold_runs = wall(exe + ["search", query, "--db", str(tmp / "idx"), "--runtime", runtime,
                                              "--views", views], args.runs)
                row = {"runtime": runtime, "views": views, "cold_search_s": round(cold, 2),
                       "cold_runs": [round(t, 2) for t in cold_runs]}
                with Engine.open(tmp / "idx", create=False, runtime=runtime) as eng:
                    eng.search(query)
                    # indexed photos (each finds itself) and photos that are not indexed (nothing is a copy)
                    for kind, paths in (("", sorted((tmp / "imgs").iterdir())[: args.queries]), ("unindexed_", others)):
                        ts, turned = [], 0
                        for p in paths:
                            t0 = time.perf_counter()
                            res = eng.search(p, k=10, views=views)
                            ts.append(time.perf_counter() - t0)
                            turned += res.views != "none"
                        row[f"{kind}warm_search_p50_ms"] = round(float(np.median(ts)) * 1000, 1)
                        row[f"{kind}warm_turned"] = f"{turned}/{len(paths)}"
                out["runtimes"].append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out_exe} --help: {out['help_s']:.2f} s (median of {args.runs}: "
          f"{', '.join(f'{t:.2f}' for t in out['help_runs'])})")
    print(f"| runtime | views | cold `lookalike search`, {args.n}-photo index (median of {args.runs}) | "
          "warm p50, indexed query | turned | warm p50, unindexed query | turned |")
    print("|---|---|---|---|---|---|---|")
    for r in out["runtimes"]:
        print(f"| {r['runtime']} | {r['views']} | {r['cold_search_s']} s ({', '.join(map(str, r['cold_runs']))}) | "
              f"{r['warm_search_p50_ms']} ms | {r['warm_turned']} | {r['unindexed_warm_search_p50_ms']} ms | "
              f"{r['unindexed_warm_turned']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
