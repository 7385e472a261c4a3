"""Core sub-commands: index, search, status, errors, remove, rebuild, adapt, models, data export."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .argtypes import add_runtime_options, fail, lowfreq, nonneg_int, positive_int, score, sigma, size_bytes
from .fsutil import human_bytes
from .retrieval.models import DEFAULT_EMBEDDER

# examples for --help (any FAISS factory string works); kept here so that --help does not import faiss
INDEX_TYPES = ["auto", "Flat", "HNSW32", "IVF1024,Flat", "IVF4096,Flat", "IVF1024,PQ32", "IVF4096,PQ64"]


def _printable(path: str) -> str:
    """A path as one printable line (a newline in a name is shown as \\n), as the indexer reports names."""
    from .indexer.loading import describe_path

    return describe_path(path)


def _open(args, create: bool = False, **kw):
    from .retrieval.engine import Engine, EngineError

    try:
        return Engine.open(args.db, create=create, **kw)
    except EngineError as exc:
        raise SystemExit(fail(str(exc))) from None


# ---------------------------------------------------------------------------------- handlers
def cmd_index(args) -> int:
    from .retrieval.engine import EngineError

    for d in args.dirs:
        if not os.path.exists(d):
            return fail(f"{d}: no such file or folder")
    if args.address and args.executor != "ray":
        return fail("--address is for --executor ray")
    engine = _open(args, create=True, model=args.model, index_type=args.index_type, runtime=args.runtime,
                   precision=args.precision, db_url=args.db_url, **({"max_pixels": args.max_pixels} if args.max_pixels else {}))
    try:
        engine.set_options(max_memory=args.max_memory, on_disk=True if args.on_disk else None)
        report = engine.add(args.dirs, batch_size=args.batch_size, workers=args.workers,
                            progress=not args.quiet, remove_missing=not args.keep_missing,
                            chunk_size=args.chunk_size, executor=args.executor, ray_address=args.address,
                            retry_skipped=args.retry_skipped)
    except EngineError as exc:
        return fail(str(exc))
    finally:
        engine.close()
    print(report.summary())
    return 0


def cmd_search(args) -> int:
    from .retrieval.engine import EngineError
    from .retrieval.options import SearchOptions

    if not os.path.exists(args.query):
        return fail(f"{_printable(args.query)}: query image not found")
    engine = _open(args, runtime=args.runtime)
    try:
        opts = SearchOptions(k=args.k, min_score=args.min_score, exclude_self=args.exclude_self, denoise=args.denoise,
                             sigma=args.sigma, n_samples=args.samples, denoise_model=args.denoise_model,
                             lowfreq=args.lowfreq, views=args.views, copies_only=args.copies_only)
        res = engine.search(args.query, options=opts)
    except EngineError as exc:
        return fail(str(exc))
    finally:
        engine.close()
    den = res.denoise
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    if den is not None:
        verb = {"none": "not denoised", "lowfreq": "not denoised"}.get(den.method, f"denoised with {den.method}")
        line = f"{verb}, sigma {den.sigma:.3f} ({'estimated' if den.sigma_estimated else 'given'})"
        if den.fallback_reason:
            line += f"; {den.fallback_reason}"
        if res.consistency is not None:
            line += f"; consistency {res.consistency:.2f}"
        print(line)
    elif res.lowfreq_weight > 0:
        print(f"low-frequency channel fused, weight {res.lowfreq_weight:g}")
    if not len(res):
        print("no copies" if args.copies_only else "no results")
    for r in res:
        extra = f"  (+{len(r.paths) - 1} duplicate{'s' if len(r.paths) > 2 else ''})" if len(r.paths) > 1 else ""
        label = "" if r.copy_score is None else f"  {r.match:<7} {r.copy_score:.2f}"
        print(f"{r.rank:>3}  {r.score:.4f}{label}  {_printable(r.path)}{extra}")
    return 0


def cmd_status(args) -> int:
    engine = _open(args)
    try:
        st = engine.status()
    finally:
        engine.close()
    if args.json:
        print(json.dumps(st.to_dict(), indent=2))
        return 0
    print(f"index      {st.path}")
    print(f"model      {st.model} ({st.dim}-d, {st.precision})")
    print(f"index type {st.index_type} -> {st.factory}")
    print(f"images     {st.images} distinct, {st.vectors} vectors")
    if st.search:
        t = st.search
        knobs = ", ".join(f"{name} {t[key]}" for key, name in (("ef_search", "efSearch"), ("nprobe", "nprobe"),
                                                                ("refine_factor", "re-rank factor")) if t.get(key))
        if t.get("recall_at_k") is not None:
            print(f"search     {knobs or 'defaults'}: recall@10 {t['recall_at_k']:.3f} on {t.get('queries')} sampled "
                  f"vectors (target {t.get('target')}{'' if t.get('reached') else ', not reached'}; tuned at "
                  f"{t.get('vectors')} vectors)")
        else:
            print(f"search     {knobs or 'defaults'}")
    print(f"files      {st.files} ({st.duplicates} duplicate paths)")
    print(f"skipped    {st.skipped}")
    for reason, n in st.skipped_by_reason.items():
        print(f"  {n:>6}  {reason}")
    print(f"on disk    {human_bytes(st.size_on_disk)}")
    for r in st.roots:
        print(f"root       {r}" + ("  (unfinished: its last indexing run did not end; run 'lookalike index' on it)"
                                   if r in (st.unfinished or []) else ""))
    return 0


def cmd_errors(args) -> int:
    engine = _open(args)
    try:
        rows = engine.errors()
    finally:
        engine.close()
    if args.json:
        print(json.dumps([{"path": p, "reason": r} for p, r in rows], indent=2))  # (path, reason) pairs
        return 0
    for p, r in rows:
        print(f"{_printable(p)}: {r}")
    if not rows:
        print("no skipped files")
    return 0


def cmd_remove(args) -> int:
    from .retrieval.engine import EngineError

    engine = _open(args)
    try:
        n = engine.remove(args.paths)
    except EngineError as exc:
        return fail(str(exc))
    finally:
        engine.close()
    print(f"removed {n} file(s)")
    return 0


def cmd_rebuild(args) -> int:
    from .retrieval.engine import EngineError

    # a damaged FAISS file is moved aside by rebuild, under the lock; a new type replaces a broken saved one
    engine = _open(args, load_index=False, index_type=args.index_type, repair=True)
    try:
        engine.set_options(max_memory=args.max_memory, on_disk=args.on_disk)
        done = engine.rebuild(args.index_type)
    except EngineError as exc:
        return fail(str(exc))
    finally:
        engine.close()
    if args.json:
        print(json.dumps(done.to_dict(), indent=2))
        return 0
    print(f"rebuilt {args.db}: {done.vectors} vectors, index {done.factory}"
          + (f" (damaged file kept as {done.damaged})" if done.damaged else ""))
    return 0


def cmd_adapt(args) -> int:
    import torch

    from .training.adapt import AdaptConfig, adapt_index

    torch.set_num_threads(args.threads)
    cfg = AdaptConfig(images=args.images, views=args.views, epochs=args.epochs, lr=args.lr, seed=args.seed,
                      chunk=args.chunk_size, workers=args.workers)
    report = adapt_index(args.db, cfg, progress=not args.quiet, command="lookalike " + " ".join(sys.argv[1:]))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def cmd_models(args) -> int:
    from .retrieval.runtime import torch_available

    if not torch_available():  # the core install: the shipped compiled models run; the others need torch
        from .retrieval.export import SHIPPED_ONNX, shipped_onnx
        from .retrieval.models import cards

        for card in cards("backbone", "siamese", "projection-head"):
            for name in (card.name, *card.aliases):
                ready = card.name in SHIPPED_ONNX and shipped_onnx(name) is not None
                print(f"{name:<32} {card.description}{' (default)' if name == DEFAULT_EMBEDDER else ''}"
                      f"{'' if ready else ' [needs torch: pip install lookalike[train]]'}")
        return 0
    from .retrieval.embedders import list_embedders

    for name, desc in list_embedders().items():
        print(f"{name:<32} {desc}{' (default)' if name == DEFAULT_EMBEDDER else ''}")
    print("(any timm model name also works when online; checkpoint:PATH loads a trained model)")
    return 0


def cmd_export(args) -> int:
    from .data.export import export_dataset
    from .data.samples import DataError

    try:
        paths = export_dataset(args.dataset, args.out, split=args.split, source=args.source, limit=args.limit,
                               progress=not args.quiet)
    except DataError as exc:
        return fail(str(exc))
    except OSError as exc:  # a folder it cannot create or write (a file in the way, read-only, disk full)
        where = exc.filename or args.out
        return fail(f"{_printable(str(where))}: cannot write the exported images ({exc.strerror or exc})")
    print(f"wrote {len(paths)} images to {args.out}")
    return 0


# ---------------------------------------------------------------------------------- parsers
def add_commands(sub, train_sub, bench_sub) -> None:
    """Register the core sub-commands."""
    p = sub.add_parser("index", help="index image folders (incrementally)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="folders (or files) to index")
    p.add_argument("--db", required=True, metavar="INDEX_DIR", help="index folder (created if missing)")
    p.add_argument("--model", default=None, help=f"embedder name of a new index (default {DEFAULT_EMBEDDER}; see 'lookalike models')")
    p.add_argument("--index-type", default=None, metavar="TYPE",
                   help=f"FAISS factory string, e.g. {', '.join(INDEX_TYPES)} (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--workers", type=nonneg_int, default=None, help="image decoding processes (default: cores, max 4)")
    p.add_argument("--db-url", default=None, help="SQLAlchemy URL for the metadata (default SQLite in the index folder)")
    p.add_argument("--max-pixels", type=positive_int, default=None, help="skip images larger than this (default 200M)")
    p.add_argument("--keep-missing", action="store_true", help="keep files that disappeared from disk")
    p.add_argument("--retry-skipped", action="store_true",
                   help="try every skipped file again (changed files, files readable again and all of them after a "
                        "new --max-pixels are retried anyway)")
    p.add_argument("--chunk-size", type=positive_int, default=512, help="images per committed chunk (default 512)")
    p.add_argument("--max-memory", type=size_bytes, default=None, metavar="SIZE",
                   help="RAM budget for the vector index (e.g. 2G); --index-type auto picks a type that fits")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where images are decoded and embedded: this process (local) or Ray Data actors (ray; "
                        "pip install 'lookalike[distributed]'); --workers sets the number of actors")
    p.add_argument("--engine", choices=["local", "ray"], dest="executor", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --executor ray: an existing Ray cluster (e.g. ray://head:10001 or auto); default: "
                        "start a local one")
    p.add_argument("--on-disk", action="store_true",
                   help="search IVF indexes with their lists memory-mapped from disk (for indexes larger than RAM)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_runtime_options(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="find indexed images that look like QUERY")
    p.add_argument("query", metavar="QUERY", help="an image file (indexed or not)")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("-k", type=positive_int, default=10, help="number of results")
    p.add_argument("--min-score", type=score, default=None, help="drop results below this cosine similarity")
    p.add_argument("--exclude-self", action="store_true", help="leave the query's own indexed copy out")
    p.add_argument("--denoise", nargs="?", const="auto", default=None, choices=["auto", "ddpm", "ddim", "classical", "none"],
                   help="clean a noisy query first (default method auto)")
    p.add_argument("--sigma", type=sigma, default="auto", help="noise level of the query for --denoise (auto or e.g. 0.3)")
    p.add_argument("--samples", type=positive_int, default=1, help="denoised samples to average (hallucination control)")
    p.add_argument("--denoise-model", default=None, help="denoiser checkpoint or shipped name")
    p.add_argument("--lowfreq", type=lowfreq, default="auto", metavar="auto|off|W",
                   help="the low-frequency channel: auto (weighed per query by the calibrated copy score; noisy photos "
                        "with --denoise fuse it), off (neural score alone), or fused with a fixed weight W")
    p.add_argument("--views", choices=["auto", "none", "mirror", "mirror-turns", "rot"], default="none",
                   help="also search the mirrored (mirror) or mirrored and turned (mirror-turns; 'rot' is its old "
                        "name) query, best score per image; "
                        "auto: the turned views only when the plain query finds no copy (for turned copies; costs "
                        "4 more embeddings for most queries without a copy); none (default)")
    p.add_argument("--copies-only", action="store_true",
                   help="show only results the calibrated copy score calls a copy (models that ship one)")
    p.add_argument("--json", action="store_true",
                   help='print {"results": [...], "denoise": null or how the query was denoised} as JSON')
    add_runtime_options(p, precision=False)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("status", help="counts, model, index type and size of an index")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("errors", help="list skipped files with their reasons")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("remove", help="forget files or folders from an index")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("rebuild", help="rebuild the FAISS index from stored vectors (no re-embedding)")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--index-type", default=None, metavar="TYPE", help="switch to this FAISS factory string")
    p.add_argument("--max-memory", type=size_bytes, default=None, metavar="SIZE", help="RAM budget that auto chooses within")
    p.add_argument("--on-disk", action=argparse.BooleanOptionalAction, default=None,
                   help="memory-map IVF inverted lists for search (--no-on-disk to load them in RAM)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("adapt", help="fine-tune the index's projection head (e.g. ntxent-copies) on its own images "
                                     "and re-embed them (resumable)")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--images", type=positive_int, default=1000,
                   help="most indexed images (a seeded sample) whose edited views train the head (default 1000)")
    p.add_argument("--views", type=positive_int, default=4, help="edited views per sampled image (default 4)")
    p.add_argument("--epochs", type=positive_int, default=30, help="training epochs over the sample (default 30)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--chunk-size", type=positive_int, default=64,
                   help="images per saved chunk of cached features (what a kill can lose; default 64)")
    p.add_argument("--workers", type=nonneg_int, default=0, help="image decoding processes (default 0: this one)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("models", help="list registered embedders")
    p.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="dataset helpers")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda a: (data.print_help(), 2)[1])
    p = dsub.add_parser("export", help="write MNIST / CIFAR-10 images as PNG, one folder per class")
    p.add_argument("dataset", choices=["mnist", "cifar10"])
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--source", choices=["sample", "torchvision"], default="sample",
                   help="sample: the offline samples shipped with lookalike (or LOOKALIKE_DATA); torchvision: full download")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--limit", type=positive_int, default=None, help="export at most this many images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_export)
