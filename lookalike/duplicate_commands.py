"""The ``duplicates`` sub-command: groups of near-duplicate images, as text, JSON or CSV. Never deletes a file."""
from __future__ import annotations

import csv
import json
import sys

from .argtypes import fail, similarity
from .fsutil import human_bytes as _size  # the one byte formatter (powers of 1024)


def cmd_duplicates(args) -> int:
    from .indexer.loading import describe_path
    from .retrieval.engine import Engine, EngineError

    try:
        engine = Engine.open(args.db, create=False)
    except EngineError as exc:
        return fail(str(exc))
    try:
        report = engine.duplicates(args.threshold)
    finally:
        engine.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    rows = report.rows()
    if args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["group", "keep", "path", "similarity",
                                                                             "copy_score", "exact", "width", "height",
                                                                             "size", "modified", "sha256"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return 0
    for g in report.groups:
        scores = [f.copy_score for f in g.files if not f.keep and f.copy_score is not None]
        head = f"copy score >= {min(scores):.2f}" if scores else f"similarity >= {g.min_similarity:.3f}"
        print(f"group {g.id}: {len(g.files)} files, {head}")
        for f in g.files:
            tag = "keep" if f.keep else "exact" if f.exact else (
                f"{f.copy_score:.2f}" if f.copy_score is not None else f"{f.similarity:.3f}")
            print(f"  {tag:>5}  {f.width}x{f.height}  {_size(f.size):>9}  {describe_path(f.path)}")
    print(f"{len(report.groups)} group(s), {report.files} files among {report.images} images at {report.score} "
          f"{report.threshold:g}; the files not marked keep take {_size(report.reclaimable)} "
          f"({report.method}, {report.seconds:.1f} s). Nothing was deleted.")
    return 0


def add_commands(sub, train_sub, bench_sub) -> None:
    """Register ``lookalike duplicates``."""
    p = sub.add_parser("duplicates", help="list groups of near-duplicate images (resized, recompressed, edited copies)",
                       description="Groups of near-duplicates among the indexed images, with the suggested file to keep "
                                   "(largest resolution, then oldest). Lists only: never deletes a file.")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--threshold", type=similarity, default=None, metavar="S",
                   help="within (0, 1]: the calibrated copy score that makes two images copies (default: the model's "
                        "'copy' line, as search uses it); for a model without a copy score, the cosine similarity "
                        "(default 0.86); higher is stricter")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the groups as JSON")
    fmt.add_argument("--csv", action="store_true", help="print one CSV row per file")
    p.set_defaults(func=cmd_duplicates)
