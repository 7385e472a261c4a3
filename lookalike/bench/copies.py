"""Edited-copy benchmark: find the original photo of an edited copy (not indexed) among photos + distractors.

Reports top-1 / top-5 per edit kind and overall, µAP over all returned (query, gallery, score) pairs (DISC21 style)
and mean ms per query, for a lookalike model and imagededup's PHash / DHash on the very same files.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from PIL import Image

from lookalike.argtypes import positive_int
from lookalike.data.edits import EDITS, apply_edit
from lookalike.retrieval.models import DEFAULT_EMBEDDER

from lookalike.retrieval.runtime import default_precision

from .common import (ExtraMethods, MethodScore, add_shared_arguments, build_gallery, cache_root, engine_search, machine,
                     machine_line, model_slug, open_index, peer_on_queries, photos_or_fail, write_result)

__all__ = ["run_copies", "format_table", "copy_queries", "add_arguments", "main"]


def copy_queries(photos: list[tuple[str, Image.Image]], edits: list[str], strengths: list[str],
                 seed: int = 0) -> list[tuple[str, str, str, int]]:
    """(photo name, edit, strength, seed) for every photo x edit x strength; ``apply_edit`` makes the copy."""
    return [(name, e, s, seed * 1_000_003 + pi * 1000 + ei * 10 + si) for pi, (name, _) in enumerate(photos)
            for ei, e in enumerate(edits) for si, s in enumerate(strengths)]


def run_copies(photos: list[tuple[str, Image.Image]], distractors: list[tuple[str, Image.Image]], work: Path,
               models: list[str], label: str, edits: list[str] | None = None,
               strengths: tuple[str, ...] = ("mild", "strong"), k: int = 10, views: str = "auto",
               peer: bool = True, seed: int = 0, progress: bool = True, extra: ExtraMethods | None = None,
               log=None, lowfreq_modes: tuple[str, ...] = ("auto", "off"), precision: str | None = None,
               adapt=None) -> dict:
    """Run the benchmark; returns the result dict (figures per method, per edit kind, per query top-1).

    Each model is searched as `lookalike search` does (``lowfreq="auto"``: thumbnails and heavily blurred copies
    fuse the low-frequency channel) and, as "MODEL lowfreq-off", with the neural score alone. ``adapt`` (a
    :class:`~lookalike.training.adapt.AdaptConfig`): also score each model's index after ``lookalike adapt`` (on a
    copy of the gallery index, kept beside it so reruns reuse its cached features). ``extra``: more methods scored on
    the plain index (benchmarks/levers.py)."""
    edits = list(edits or EDITS)
    work = Path(work)
    gallery = build_gallery(work / f"gallery-{label}-{len(distractors)}", photos, distractors)
    queries = copy_queries(photos, edits, list(strengths), seed)
    source = dict(photos)

    def edited(q: tuple[str, str, str, int]) -> Image.Image:
        return apply_edit(source[q[0]], q[1], q[2], seed=q[3])

    targets = [gallery.originals[q[0]].stem for q in queries]
    groups = [q[1] for q in queries]
    scores: dict[str, MethodScore] = {}
    adapt_reports: dict[str, dict] = {}
    extra_names = extra.names() if extra is not None else []
    runs = [(m, None) for m in models] + ([(m, "adapt") for m in models] if adapt is not None else [])
    for model, variant in runs:
        folder = work / f"index-{label}-{len(distractors)}-{model_slug(model, precision)}"
        if variant == "adapt":
            adapt_reports[model] = _adapted_index(folder, gallery, model, adapt, progress, log, precision)
            folder = folder.with_name(folder.name + "-adapted")
        engine = open_index(folder, gallery, model, progress, precision if variant is None else None)
        try:
            engine_search(engine, gallery, edited(queries[0]), k)  # warm-up: model load, first-call allocations
            base = model + ("" if variant is None else f" +{variant}")
            # the plain search always, so that every lever and view has its baseline from the same run;
            # lowfreq auto: what `lookalike search` does; off: the neural score alone
            # views auto (the default: turned views for undecided queries) and none (the plain search)
            for vw in dict.fromkeys(("auto", "none", views)):
                # the levers score the same query views from one batch; the Engine's pass keeps its own name
                same = f"+views:{vw}" in extra_names
                for lowfreq in lowfreq_modes:
                    name = (base + ("" if vw == "auto" else f" +views:{vw}" + (" (Engine)" if same else ""))
                            + ("" if lowfreq == "auto" else " lowfreq-off"))
                    ms = scores[name] = MethodScore()
                    t0 = time.perf_counter()
                    for q, target in zip(queries, targets):
                        names, sc, t = engine_search(engine, gallery, edited(q), k, views=vw, lowfreq=lowfreq)
                        ms.add(names, sc, target, t)
                    print(f"bench: {name} on {len(queries)} copies in {time.perf_counter() - t0:.0f} s",
                          file=log or sys.stderr)
            if variant is not None or extra is None:
                continue  # extra methods: on the plain index only
            t0 = time.perf_counter()
            for lname, lever in extra.run(engine, gallery, work, model, (edited(q) for q in queries), targets,
                                          k, progress).items():
                scores[f"{model} {lname}"] = lever
            if extra_names:
                print(f"bench: {model} {', '.join(extra_names)} in {time.perf_counter() - t0:.0f} s", file=log or sys.stderr)
        finally:
            engine.close()
    peer_status = "not run (--no-peer)"
    if peer:
        found, peer_status = peer_on_queries(work / f"queries-{label}-seed{seed}",
                                             [(f"{q[0]}__{q[1]}__{q[2]}", lambda q=q: edited(q)) for q in queries],
                                             gallery, targets, k, seed=seed, log=log)
        scores.update(found)
    return {
        "bench": "copies", "photo_set": label, "n_photos": len(photos), "n_distractors": len(distractors),
        "n_gallery": len(gallery.paths), "n_queries": len(queries), "edits": edits, "strengths": list(strengths),
        "k": k, "views": views, "levers": extra_names, "adapt": adapt_reports, "seed": seed,
        "precision": precision or default_precision(models[0]), "peer": peer_status,
        "machine": machine(),
        "methods": {m: s.summary(groups) | {"per_strength": s.summary([f"{q[1]}/{q[2]}" for q in queries])["per_group"]}
                    for m, s in scores.items()},
        "gallery": str(gallery.folder),
        "queries": [{"photo": q[0], "edit": q[1], "strength": q[2], "seed": q[3],
                     "top1": {m: s.top1[i] for m, s in scores.items()}} for i, q in enumerate(queries)],
    }


def _adapted_index(plain: Path, gallery, model: str, cfg, progress: bool, log, precision: str | None = None) -> dict:
    """``lookalike adapt`` on a copy of the plain gallery index (``<plain>-adapted``); returns its report."""
    import shutil

    from lookalike.training.adapt import adapt_index

    target = plain.with_name(plain.name + "-adapted")
    if not target.exists():
        open_index(plain, gallery, model, progress, precision).close()
        shutil.copytree(plain, target, ignore=shutil.ignore_patterns(".lock", ".*.tmp"))
    report = adapt_index(target, cfg, progress=progress, command="bench copies --adapt")
    print(f"bench: adapted {model}: {report.summary()}", file=log or sys.stderr)
    return report.to_dict()


def format_table(result: dict) -> str:
    """The printed table: top-1 / top-5 per edit kind and overall, µAP and ms per query, one column pair per method."""
    methods = list(result["methods"])
    kinds = list(next(iter(result["methods"].values()))["per_group"]) if methods else []
    head = f"{'edit':<12}" + "".join(f" {m[-30:]:>30}" for m in methods)
    lines = [f"copies: {result['photo_set']} photos ({result['n_photos']}), gallery {result['n_gallery']}, "
             f"{result['n_queries']} queries; top-1 / top-5; {machine_line(result['machine'])}", head]
    for kind in kinds:
        cells = [result["methods"][m]["per_group"][kind] for m in methods]
        lines.append(f"{kind:<12}" + "".join(f" {c['top1']:>17.3f} / {c['top5']:<10.3f}" for c in cells))
    lines.append(f"{'overall':<12}" + "".join(f" {result['methods'][m]['top1']:>17.3f} / {result['methods'][m]['top5']:<10.3f}"
                                              for m in methods))
    lines.append(f"{'µAP':<12}" + "".join(f" {result['methods'][m]['muap']:>30.3f}" for m in methods))
    lines.append(f"{'ms/query':<12}" + "".join(f" {result['methods'][m]['ms_per_query']:>30.1f}" for m in methods))
    lines.append(f"peer: {result['peer']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``lookalike bench copies`` (``python -m benchmarks.levers copies`` adds the levers')."""
    add_shared_arguments(p)
    p.add_argument("--model", action="append", default=None, help=f"embedder (repeatable; default {DEFAULT_EMBEDDER})")
    p.add_argument("--edits", default=",".join(EDITS), help="comma-separated edit kinds")
    p.add_argument("--views", choices=("auto", "none", "mirror", "mirror-turns", "rot"), default="auto",
                   help="query-time views (max score per image) measured besides auto (the default) and none")
    p.add_argument("--adapt", action="store_true",
                   help="also score each model after 'lookalike adapt' of the gallery index (projection heads only)")
    p.add_argument("--adapt-images", type=positive_int, default=1000, help="adapt: most sampled images (default 1000)")
    p.add_argument("--adapt-views", type=positive_int, default=4, help="adapt: edited views per image (default 4)")
    p.add_argument("--adapt-epochs", type=positive_int, default=30, help="adapt: epochs (default 30)")
    p.add_argument("--adapt-lr", type=float, default=1e-4, help="adapt: learning rate (default 1e-4)")
    p.add_argument("--suite", choices=("classic", "augly"), default="classic",
                   help="classic: lookalike's own 12 edits; augly: 35 AugLy kinds, half the queries unmatched, the "
                        "calibrated copy score (lookalike.bench.calibrated)")
    p.add_argument("--fit", action="store_true",
                   help="augly: fit the copy score leave-one-kind-out and report held-out figures (dev photos only)")
    p.add_argument("--save", default=None, help="augly --fit: write the scorer fitted on every kind here")
    p.add_argument("--kinds", default=None, help="augly: comma-separated AugLy kinds (default all)")
    p.add_argument("--with-edits", action="store_true",
                   help="augly: also lookalike's own 12 edits at both strengths as kinds (edit-NAME-STRENGTH)")
    p.add_argument("--json", default=None, help="result JSON (default benchmarks/results/copies-SET[-MODEL].json)")
    p.add_argument("--grid", default=None, help="picture grid PNG (default docs/copies-grid-SET.png; 'none' to skip)")


def _slug(models: list[str]) -> str:
    return "" if models == ["efficientnet_lite0"] else "-" + "+".join(Path(m.split(":")[-1]).stem for m in models)


def main(args: argparse.Namespace, extra: ExtraMethods | None = None) -> int:
    """Run from parsed arguments (and ``extra`` methods): print the table, write JSON and the picture grid."""
    import torch

    from lookalike.data.photosets import distractors

    from .grid import copies_grid

    torch.set_num_threads(max(1, args.threads))
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    bad = [e for e in edits if e not in EDITS]
    if bad:
        print(f"lookalike: --edits {','.join(bad)}: unknown (choose {', '.join(EDITS)})", file=sys.stderr)
        return 2
    if args.distractors < 0 or args.k < 5:
        print("lookalike: --distractors must be >= 0 and -k >= 5", file=sys.stderr)
        return 2
    models = args.model or [DEFAULT_EMBEDDER]
    if args.suite == "augly":
        return _main_augly(args, models[0])
    photos = photos_or_fail(args)
    if photos is None:
        return 2
    from lookalike.errors import LookalikeError

    adapt = None
    if args.adapt:
        from lookalike.training.adapt import AdaptConfig

        adapt = AdaptConfig(images=args.adapt_images, views=args.adapt_views, epochs=args.adapt_epochs,
                            lr=args.adapt_lr, seed=args.seed)
    try:
        result = run_copies(photos, distractors(args.distractors, max_side=args.max_side),
                            Path(args.work or cache_root() / "work"), models, args.photos, edits, k=args.k,
                            views=args.views, peer=not args.no_peer, seed=args.seed, progress=not args.quiet,
                            extra=extra, adapt=adapt, precision=args.precision)
    except LookalikeError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    result["command"] = "lookalike bench copies " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["bench", "copies"] else sys.argv[1:])
    result["threads"] = args.threads
    print(format_table(result))
    root = Path.cwd()
    out = write_result(result, args.json or root / "benchmarks" / "results" /
                       f"copies-{args.photos}{_slug(models)}{'' if args.views in ('auto', 'none') else '-views-' + args.views}"
                       f"{'-levers' if extra is not None and extra.names() else ''}{'-adapt' if adapt else ''}.json")
    print(f"json: {out}")
    if args.grid != "none":
        grid = Path(args.grid or root / "docs" / f"copies-grid-{args.photos}.png")
        copies_grid(result, dict(photos), grid)
        print(f"grid: {grid}")
    return 0


def _main_augly(args: argparse.Namespace, model: str) -> int:
    """``--suite augly``: the AugLy copy suite with the calibrated copy score."""
    from lookalike.data.augly_edits import AUGLY_KINDS, augly_available
    from lookalike.data.photosets import distractors

    from .calibrated import format_suite, run_suite

    if not augly_available():
        print("lookalike: --suite augly needs AugLy: pip install 'lookalike[bench]'", file=sys.stderr)
        return 2
    if args.fit and args.photos == "eval":
        print("lookalike: --fit is for dev photos only (evaluation photos are never fitted on)", file=sys.stderr)
        return 2
    kinds = [k.strip() for k in (args.kinds or ",".join(AUGLY_KINDS)).split(",") if k.strip()]
    bad = [k for k in kinds if k not in AUGLY_KINDS]
    if bad:
        print(f"lookalike: --kinds {','.join(bad)}: unknown (choose {', '.join(AUGLY_KINDS)})", file=sys.stderr)
        return 2
    if args.with_edits:
        kinds += [f"edit-{e}-{s}" for e in EDITS for s in ("mild", "strong")]
    photos = photos_or_fail(args)
    if photos is None:
        return 2
    result = run_suite(photos, distractors(args.distractors, max_side=args.max_side),
                       Path(args.work or cache_root() / "work"), model, args.photos, kinds, args.fit,
                       Path(args.save) if args.save else None, k=args.k, seed=args.seed, peer=not args.no_peer,
                       progress=not args.quiet, precision=args.precision)
    result["command"] = "lookalike bench copies " + shlex.join(sys.argv[3:] if sys.argv[1:3] == ["bench", "copies"] else sys.argv[1:])
    result["machine"] = machine()
    print(format_suite(result))
    out = write_result(result, args.json or Path.cwd() / "benchmarks" / "results" /
                       f"copies-augly-{args.photos}{'-fit' if args.fit else ''}.json")
    print(f"json: {out}")
    return 0
