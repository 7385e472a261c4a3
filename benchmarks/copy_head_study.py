"""Does a copy head trained on AugLy views find originals of edit kinds it never saw? (issue 22, item 4)

Data: the copy-head training images (``training.copy_head.copy_training_items``: dev photo tiles, generated scenes,
CIFAR-10-sample train, Debian graphics; no scikit-image photo), each edited into views by the 59 development edit
kinds (35 AugLy kinds + lookalike's 12 edits at 2 strengths). The kinds are split into folds; view slot ``v`` of
every image draws its kind from fold ``v // per_fold``, so a head for held-out fold ``f`` trains on the other
slots only and never sees a kind of fold ``f``.

Ground truth / run: the frozen efficientnet_lite0 features (OpenVINO) of the dev-wide AugLy bench queries and
gallery (``lookalike bench copies --suite augly --photos dev-wide --with-edits --distractors 600`` must have made
them); each head projects both, and a matched query scores when its original is the gallery's nearest image.

Report: per kind, top-1 of the neural channel alone: the shipped ``ntxent-copies`` head, the AugLy head of the
fold that held the kind out, and the all-kinds AugLy head (in-sample). ``python -m benchmarks.copy_head_study``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

WORK = Path.home() / ".cache" / "lookalike-bench" / "work"
OUT = WORK / "copy-head-study"


def _load(path: str) -> np.ndarray:
    from PIL import Image

    from lookalike.training.copy_views import lite0_input

    with Image.open(path) as im:
        return lite0_input(im)


def bench_features(run, suite: str = "dev-wide") -> dict:
    """lite0 features of the AugLy bench's gallery and queries (made by ``lookalike bench copies``)."""
    from lookalike.training.copy_views import run_inputs

    path = OUT / f"bench-{suite}.npz"
    if path.is_file():
        return dict(np.load(path, allow_pickle=False))
    gdir = WORK / f"augly-gallery-{suite}-600"
    qdir = WORK / f"augly-queries-{suite}-seed0"
    if not qdir.is_dir():
        raise SystemExit(f"copy_head_study: {qdir}: no bench queries; run lookalike bench copies --suite augly first")
    gallery = sorted(str(p) for p in gdir.rglob("*") if p.is_file())
    queries = sorted(str(p) for p in qdir.glob("*.jpg"))
    res = {"gallery": run_inputs(gallery, _load, [], run, "gallery"),
           "queries": run_inputs(queries, _load, [], run, "queries"),
           "gallery_paths": np.array(gallery), "query_paths": np.array(queries)}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, **res)
    return res


def project(head, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        z = head.hidden(torch.from_numpy(x)).numpy()
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", type=int, default=6)
    p.add_argument("--per-fold", type=int, default=2)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--koleo", type=float, nargs="+", default=[0.0])
    p.add_argument("--clean-p", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="benchmarks/results/copy-head-study.json")
    a = p.parse_args(argv)
    import torch

    from lookalike.retrieval.models import MODELS_DIR
    from lookalike.retrieval.nets import load_checkpoint_embedder
    from lookalike.training.copy_views import edited_view_features, fit_copy_head, lite0_runner

    torch.set_num_threads(2)
    tr = edited_view_features(a.folds * a.per_fold, a.folds, a.seed)
    be = bench_features(lite0_runner())
    kinds = [str(k) for k in tr["kinds"]]
    gnames = [Path(s).stem for s in be["gallery_paths"]]
    gidx = {n: i for i, n in enumerate(gnames) if "/photo/" in str(be["gallery_paths"][i])}
    qk, qt = [], []
    for s in be["query_paths"]:
        photo, kind = Path(s).stem.split("__")
        qk.append(kind)
        qt.append(gidx.get(photo, -1))
    qk, qt = np.array(qk), np.array(qt)
    matched = qt >= 0

    def top1(head) -> dict[str, float]:
        g, q = project(head, be["gallery"]), project(head, be["queries"][matched])
        hit = (q @ g.T).argmax(1) == qt[matched]
        return {k: float(hit[qk[matched] == k].mean()) for k in kinds}

    old = load_checkpoint_embedder(str(MODELS_DIR / "ntxent-copies-lite0.pt")).head.eval()
    rows = {"ntxent-copies": top1(old)}
    for w in a.koleo:
        held: dict[str, float] = {}
        for f in range(a.folds):
            keep = [v for v in range(a.folds * a.per_fold) if v // a.per_fold != f]
            head = fit_copy_head(tr["clean"], tr["views"][:, keep], a.epochs, w, a.seed, a.clean_p)
            t = top1(head)
            held.update({k: t[k] for i, k in enumerate(kinds) if tr["group_of"][i] == f})
            print(f"koleo {w} fold {f} done", file=sys.stderr, flush=True)
        rows[f"augly koleo={w} held-out"] = held
        rows[f"augly koleo={w} all kinds"] = top1(fit_copy_head(tr["clean"], tr["views"], a.epochs, w, a.seed, a.clean_p))
    n = {k: int((qk[matched] == k).sum()) for k in kinds}
    total = sum(n.values())
    print("| kind | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in kinds:
        print(f"| {k} | " + " | ".join(f"{r[k]:.3f}" for r in rows.values()) + " |")
    print("| **all (query-weighted)** | " + " | ".join(f"**{sum(r[k] * n[k] for k in kinds) / total:.4f}**"
                                                    for r in rows.values()) + " |")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"args": vars(a), "queries_per_kind": n, "top1": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
