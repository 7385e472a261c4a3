"""The ``duplicates`` sub-command: groups of near-duplicate images, as text, JSON or CSV; with ``--move-to DIR`` or
``--trash`` the files not kept are moved (a dry run unless ``--apply``), each step in an undo log that ``--undo LOG``
plays back. Never deletes a file."""
from __future__ import annotations

import csv
import json
import sys

from .argtypes import fail, similarity
from .fsutil import human_bytes as _size  # the one byte formatter (powers of 1024)


def _act(args, engine, report) -> int:
    """--move-to / --trash / --plan: print (dry run), write the plan, or carry it out with an undo log."""
    from pathlib import Path

    from .indexer.loading import describe_path
    from .retrieval.dedupe import ActionError, apply_plan, plan_actions, plan_script

    action = "trash" if args.trash else "move"
    try:
        plan = plan_actions(report, action, args.move_to, roots=engine.store.roots())
    except ActionError as exc:
        return fail(str(exc))
    where = f"to {plan.dest}" if action == "move" else "to the system trash"
    if args.plan:
        text = json.dumps(plan.to_dict(), indent=2) if args.plan.endswith(".json") else plan_script(plan)
        from .fsutil import atomic_write_text

        atomic_write_text(Path(args.plan), text)
        print(f"wrote a plan to {action} {len(plan.items)} files ({_size(plan.bytes)}) {where}: {args.plan}. "
              "Nothing was moved.")
        return 0
    if not args.apply:
        for i in plan.items:
            print(f"would {action} {describe_path(i.src)}" + (f" -> {describe_path(i.dst)}" if i.dst else "")
                  + f"  (copy of {describe_path(i.keeper)}{', identical' if i.exact else ''})")
        print(f"dry run: {len(plan.items)} files ({_size(plan.bytes)}) would go {where}; add --apply to do it "
              "(an undo log is written). Nothing was moved.")
        return 0
    try:
        res = apply_plan(engine, plan, args.log)
    except (ActionError, OSError) as exc:
        return fail(str(exc) if isinstance(exc, ActionError) else f"{args.log or args.db}: {exc.strerror or exc}")
    for path, reason in res.skipped:
        print(f"lookalike: {describe_path(path)}: left in place: {reason}", file=sys.stderr)
    print(f"moved {len(res.done)} files {where}; the index forgot them. Undo with: lookalike duplicates --db "
          f"{args.db} --undo {res.log}")
    return 2 if res.skipped else 0


def _undo(args, engine) -> int:
    from .indexer.loading import describe_path
    from .retrieval.dedupe import ActionError, undo

    try:
        res = undo(engine, args.undo)
    except ActionError as exc:
        return fail(str(exc))
    for path, reason in res.skipped:
        print(f"lookalike: {describe_path(path)}: not restored: {reason}", file=sys.stderr)
    print(f"restored {len(res.done)} files from {args.undo} and indexed them again")
    return 2 if res.skipped else 0


def cmd_duplicates(args) -> int:
    from .indexer.loading import describe_path
    from .retrieval.engine import Engine, EngineError

    acting = bool(args.move_to or args.trash or args.undo)
    if args.apply and not (args.move_to or args.trash):
        return fail("--apply needs --move-to DIR or --trash")
    if args.plan and not (args.move_to or args.trash):
        return fail("--plan needs --move-to DIR or --trash (what the plan does)")
    try:
        engine = Engine.open(args.db, create=False)
    except EngineError as exc:
        return fail(str(exc))
    try:
        if args.undo:
            return _undo(args, engine)
        report = engine.duplicates(args.threshold)
        if acting:
            return _act(args, engine, report)
    except EngineError as exc:
        return fail(str(exc))
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
                                   "(largest resolution, then oldest). Lists them; with --move-to DIR or --trash "
                                   "and --apply, moves the files not kept and writes an undo log (--undo LOG puts them "
                                   "back). Never deletes a file.")
    p.add_argument("--db", required=True, metavar="INDEX_DIR")
    p.add_argument("--threshold", type=similarity, default=None, metavar="S",
                   help="within (0, 1]: the calibrated copy score that makes two images copies (default: the model's "
                        "'copy' line, as search uses it); for a model without a copy score, the cosine similarity "
                        "(default 0.86); higher is stricter")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the groups as JSON")
    fmt.add_argument("--csv", action="store_true", help="print one CSV row per file")
    act = p.add_argument_group("acting on the files not kept (a dry run unless --apply; never deletes)")
    where = act.add_mutually_exclusive_group()
    where.add_argument("--move-to", metavar="DIR", help="move the files not kept below DIR (the library's folder "
                                                        "layout kept; DIR must lie outside the indexed folders)")
    where.add_argument("--trash", action="store_true", help="send the files not kept to the system trash")
    where.add_argument("--undo", metavar="LOG", help="put back every file an earlier --apply moved, from its undo log, "
                                                     "and index them again")
    act.add_argument("--apply", action="store_true", help="really move the files (without it: print what would move)")
    act.add_argument("--plan", metavar="FILE", help="write the moves as a shell script (or JSON when FILE ends in "
                                                    ".json) instead of doing them")
    act.add_argument("--log", metavar="FILE", help="undo log of --apply (default: INDEX_DIR/undo/ACTION-TIME.jsonl)")
    p.set_defaults(func=cmd_duplicates)
