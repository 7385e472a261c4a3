"""Noisy-photo benchmark: find the original of a noisy copy (Gaussian sigma 0.1..1.0 on 0..1, Poisson, noise + JPEG).

Methods: the model with no denoising, with each ``--denoise`` mode, fused with a low-frequency channel (a 32x32
DCT signature, the content a perceptual hash keeps), and imagededup's PHash / DHash on the very same files.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from PIL import Image

from lookalike.data.edits import NOISES, apply_noise
from lookalike.retrieval.models import DEFAULT_EMBEDDER

from lookalike.retrieval.runtime import default_precision

from .common import (ExtraMethods, MethodScore, add_shared_arguments, build_gallery, cache_root, engine_search, machine,
                     machine_line, model_slug, open_index, peer_on_queries, photos_or_fail, write_result)

__all__ = ["run_noisy", "format_table", "add_arguments", "main"]

DENOISE_MODES = ("auto", "ddim", "ddpm", "classical")


def run_noisy(photos: list[tuple[str, Image.Image]], distractors: list[tuple[str, Image.Image]], work: Path,
              model: str, label: str, levels: list[str] | None = None, modes: tuple[str, ...] = DENOISE_MODES,
              extra: ExtraMethods | None = None, k: int = 10, peer: bool = True, seed: int = 0,
              progress: bool = True, log=None, precision: str | None = None) -> dict:
    """Run the benchmark; returns the result dict (top-1 per level and ms per query, per method). ``extra``: more
    methods scored on the same queries (benchmarks/levers.py)."""
    levels = list(levels or NOISES)
    work = Path(work)
    gallery = build_gallery(work / f"gallery-{label}-{len(distractors)}", photos, distractors)
    queries = [(name, lvl, seed * 1_000_003 + pi * 100 + li) for pi, (name, _) in enumerate(photos)
               for li, lvl in enumerate(levels)]
    source = dict(photos)

    def noisy(q: tuple[str, str, int]) -> Image.Image:
        return apply_noise(source[q[0]], q[1], seed=q[2])

    targets = [gallery.originals[q[0]].stem for q in queries]
    groups = [q[1] for q in queries]
    scores: dict[str, MethodScore] = {}
    engine = open_index(work / f"index-{label}-{len(distractors)}-{model_slug(model, precision)}", gallery, model,
                            progress, precision)
    try:
        engine_search(engine, gallery, noisy(queries[0]), k)  # warm-up
        # the neural score alone; search without query views; search as `lookalike search` does; each --denoise
        runs = [("no denoise, lowfreq off", None, "off", "none"), ("no denoise, views none", None, "auto", "none"),
                ("no denoise", None, "auto", "auto")]
        runs += [(f"--denoise {m}", m, "auto", "auto") for m in modes]
        for name, opt, lowfreq, views in runs:
            ms = MethodScore()
            t0 = time.perf_counter()
            for q, target in zip(queries, targets):
                names, sc, t = engine_search(engine, gallery, noisy(q), k, denoise=opt, lowfreq=lowfreq, views=views)
                ms.add(names, sc, target, t)
            print(f"bench: {model} {name} on {len(queries)} noisy queries in {time.perf_counter() - t0:.0f} s", file=log or sys.stderr)
            scores[name] = ms
        if extra is not None:
            scores.update(extra.run(engine, gallery, work, model, (noisy(q) for q in queries), targets, k, progress))
    finally:
        engine.close()
    peer_status = "not run (--no-peer)"
    if peer:
        found, peer_status = peer_on_queries(work / f"noisy-{label}-seed{seed}",
                                             [(f"{q[0]}__{q[1]}", lambda q=q: noisy(q)) for q in queries],
                                             gallery, targets, k, seed=seed, log=log)
        scores.update(found)
    return {
        "bench": "noisy", "photo_set": label, "model": model, "n_photos": len(photos),
        "n_distractors": len(distractors), "n_gallery": len(gallery.paths), "n_queries": len(queries),
        "levels": levels, "levers": extra.names() if extra is not None else [], "k": k, "precision": precision or default_precision(model), "seed": seed, "peer": peer_status,
        "machine": machine(), "gallery": str(gallery.folder),
        "methods": {m: s.summary(groups) for m, s in scores.items()},
        "queries": [{"photo": q[0], "level": q[1], "seed": q[2], "top1": {m: s.top1[i] for m, s in scores.items()}}
                    for i, q in enumerate(queries)],
    }


def format_table(result: dict) -> str:
    """Printed table: top-1 per noise level (and count of photos), ms per query, one column per method."""
    methods = list(result["methods"])
    n = result["n_photos"]
    lines = [f"noisy: {result['photo_set']} photos ({n}), gallery {result['n_gallery']}; top-1 (found/{n}); "
             f"{machine_line(result['machine'])}", f"{'level (' + result['model'][:12] + ')':<20}" + "".join(f" {m[-26:]:>26}" for m in methods)]
    for lvl in result["levels"]:
        cells = [result["methods"][m]["per_group"][lvl]["top1"] for m in methods]
        lines.append(f"{lvl:<20}" + "".join(f" {c:>17.3f} ({round(c * n):>2}/{n})" for c in cells))
    lines.append(f"{'ms/query':<20}" + "".join(f" {result['methods'][m]['ms_per_query']:>26.1f}" for m in methods))
    lines.append(f"peer: {result['peer']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``lookalike bench noisy`` (``python -m benchmarks.levers noisy`` adds the levers')."""
    add_shared_arguments(p)
    p.add_argument("--model", default=DEFAULT_EMBEDDER, help=f"embedder (default {DEFAULT_EMBEDDER})")
    p.add_argument("--levels", default=",".join(NOISES), help="comma-separated noise levels")
    p.add_argument("--denoise-modes", default=",".join(DENOISE_MODES), help="comma-separated --denoise modes ('' for none)")
    p.add_argument("--json", default=None, help="result JSON (default benchmarks/results/noisy-SET[-MODEL].json)")
    p.add_argument("--grid", default=None, help="picture grid PNG (default docs/noisy-grid-SET.png; 'none' to skip)")


def main(args: argparse.Namespace, extra: ExtraMethods | None = None) -> int:
    """Run from parsed arguments (and ``extra`` methods): print the table, write JSON and the picture grid."""
    import torch

    from lookalike import EngineError
    from lookalike.data.photosets import distractors

    from .grid import noisy_grid

    torch.set_num_threads(max(1, args.threads))
    levels = [x.strip() for x in args.levels.split(",") if x.strip()]
    modes = tuple(x.strip() for x in args.denoise_modes.split(",") if x.strip())
    bad = [x for x in levels if x not in NOISES] + [m for m in modes if m not in DENOISE_MODES]
    if bad:
        print(f"lookalike: {','.join(bad)}: unknown level or denoise mode (levels: {', '.join(NOISES)}; modes: "
              f"{', '.join(DENOISE_MODES)})", file=sys.stderr)
        return 2
    photos = photos_or_fail(args)
    if photos is None:
        return 2
    try:
        result = run_noisy(photos, distractors(args.distractors, max_side=args.max_side),
                           Path(args.work or cache_root() / "work"), args.model, args.photos, levels, modes, extra,
                           k=args.k, peer=not args.no_peer, seed=args.seed, progress=not args.quiet,
                           precision=args.precision)
    except EngineError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    result["command"] = "lookalike bench noisy " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["bench", "noisy"] else sys.argv[1:])
    result["threads"] = args.threads
    print(format_table(result))
    root = Path.cwd()
    slug = "" if args.model == "efficientnet_lite0" else "-" + Path(args.model.split(":")[-1]).stem
    out = write_result(result, args.json or root / "benchmarks" / "results" / f"noisy-{args.photos}{slug}.json")
    print(f"json: {out}")
    if args.grid != "none":
        grid = Path(args.grid or root / "docs" / f"noisy-grid-{args.photos}.png")
        noisy_grid(result, dict(photos), grid)
        print(f"grid: {grid}")
    return 0
