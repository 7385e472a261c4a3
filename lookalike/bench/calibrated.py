"""The AugLy copy suite with the calibrated copy score: ``lookalike bench copies --suite augly``.

Data: half the photos are indexed (with distractors), the other half are not; every photo gets one copy per AugLy
kind (data/augly_edits.py), so half the queries have no match (the DISC21 protocol). Ground truth: each matched
query's original. Run: every query is searched as `lookalike search` does it (Searcher.candidates: both channels,
plus the four turned views), and each candidate's copy-score features are kept. Report:

- ``--fit`` (dev photos only): leave-one-kind-out. For each kind and each of two photo folds, the score is fitted on
  the other kinds' other fold and scored on the held-out kind's held-out fold; the threshold is the F1-best one on
  the fitted part. Every figure reported is a held-out one. Then the score is fitted on everything and written as
  the model's shipped scorer (``--save``).
- without ``--fit``: the shipped scorer, as search uses it (evaluation photos: never fitted on).

Top-1 / top-5 per kind over the matched queries, µAP over every query's top-k (matched and unmatched), precision
and recall of "copy" at the threshold (default search: no query views; and with ``--views auto``), imagededup's PHash / DHash per kind on the same files.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.retrieval.calibration import DENS_TOP, CopyScorer, density, pair_features

from .common import MethodScore, build_gallery, micro_ap, open_index, run_peer

__all__ = ["QueryRecord", "collect", "evaluate", "loko", "ranked", "run_suite", "photo_fold", "format_suite"]

VIEWS = ("mirror", "rot90", "rot180", "rot270")


def photo_fold(name: str, n: int = 2) -> int:
    """A photo's fold (stable across runs)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % n


@dataclass
class QueryRecord:
    """One query's candidates, plain and per turned view: ids, both cosines, the candidates' long sides, and the
    query's (background cosine, background low-frequency cosine, long side); features are made from these."""

    kind: str
    photo: str
    fold: int
    target: int                       # the original's image id, -1 when the photo is not indexed
    ids: list[np.ndarray] = field(default_factory=list)   # [plain, view1..4]
    cos: list[np.ndarray] = field(default_factory=list)
    low: list[np.ndarray] = field(default_factory=list)
    sides: list[np.ndarray] = field(default_factory=list)
    ctx: list[tuple[float, float, float]] = field(default_factory=list)
    _x: dict = field(default_factory=dict, repr=False)

    def x(self, j: int) -> np.ndarray:
        """Feature rows of view ``j``'s candidates."""
        if j not in self._x:
            bgc, bgl, side = self.ctx[j]
            self._x[j] = pair_features(self.cos[j], self.low[j], bgc, bgl, np.minimum(self.sides[j], side),
                                       density(self.cos[j], bgc), density(self.low[j], bgl))
        return self._x[j]


def _candidates(engine, scorer_bg: CopyScorer, img, vec) -> tuple:
    from lookalike.indexer.signature import lowfreq_signature

    sig = lowfreq_signature(img)
    c = engine.searcher.candidates(vec, sig)
    ctx = scorer_bg.context(vec, sig, max(img.info.get("original_size", img.size)))
    return c.ids, c.cos, c.low, c.sides, (ctx.bg_cos, ctx.bg_low, ctx.side)


def save_records(records: list[QueryRecord], path: Path) -> None:
    """The records as one npz (flat arrays and offsets), written atomically."""
    from lookalike.fsutil import atomic_path

    flat = {k: [] for k in ("ids", "cos", "low", "sides")}
    lens, ctx = [], []
    for r in records:
        for j in range(len(r.ids)):
            for k in flat:
                flat[k].append(getattr(r, k)[j])
            lens.append(len(r.ids[j]))
            ctx.append(r.ctx[j])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.concatenate(v) for k, v in flat.items()}, lens=np.asarray(lens), ctx=np.asarray(ctx),
                     kind=np.asarray([r.kind for r in records]), photo=np.asarray([r.photo for r in records]),
                     fold=np.asarray([r.fold for r in records]), target=np.asarray([r.target for r in records]),
                     views=np.asarray([len(r.ids) for r in records]))


def load_records(path: Path) -> list[QueryRecord]:
    """Records written by :func:`save_records`."""
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}  # each member read once
    bounds = np.concatenate([[0], np.cumsum(z["lens"])])
    out, v = [], 0
    for kind, photo, fold, target, nv in zip(z["kind"], z["photo"], z["fold"], z["target"], z["views"]):
        r = QueryRecord(str(kind), str(photo), int(fold), int(target))
        for j in range(v, v + int(nv)):
            sl = slice(bounds[j], bounds[j + 1])
            r.ids.append(z["ids"][sl])
            r.cos.append(z["cos"][sl])
            r.low.append(z["low"][sl])
            r.sides.append(z["sides"][sl])
            r.ctx.append(tuple(float(c) for c in z["ctx"][j]))
        v += int(nv)
        out.append(r)
    return out


def collect(engine, scorer_bg: CopyScorer, queries: list[tuple[str, str, int, int, Path]],
            progress: bool = True, log=None) -> list[QueryRecord]:
    """Features of every query (kind, photo, fold, target id, file), loaded as search loads a query."""
    from lookalike.retrieval.searcher import view_image

    out = []
    t0 = time.perf_counter()
    for i, (kind, photo, fold, target, path) in enumerate(queries):
        img, _ = engine.load_query(path)
        views = [img] + [view_image(img, v) for v in VIEWS]
        vecs = engine.embed(views)
        rec = QueryRecord(kind, photo, fold, target)
        for im, v in zip(views, vecs):
            ids, cos, low, sides, ctx = _candidates(engine, scorer_bg, im, v)
            rec.ids.append(ids)
            rec.cos.append(cos)
            rec.low.append(low)
            rec.sides.append(sides)
            rec.ctx.append(ctx)
        out.append(rec)
        if progress and (i + 1) % 500 == 0:
            print(f"bench: features of {i + 1}/{len(queries)} queries ({time.perf_counter() - t0:.0f} s)",
                  file=log or sys.stderr)
    return out


def gallery_negatives(engine, scorer_bg: CopyScorer, limit: int = 10) -> np.ndarray:
    """Feature rows of each indexed image against its nearest other indexed images (no two are copies): the pairs
    a duplicate search compares."""
    ids, vecs = engine.vectors()
    sig_ids, sigs = engine.store.signatures()
    pos = {int(i): r for r, i in enumerate(sig_ids.tolist())}
    meta = engine.store.lookup(ids.tolist())
    sides = np.asarray([max(meta[int(i)].width, meta[int(i)].height) if int(i) in meta else 0 for i in ids], np.float64)
    s_rows = np.asarray([pos.get(int(i), 0) for i in ids])
    s = sigs[s_rows]
    bgc, bgl = scorer_bg.background(vecs, s)
    rows = []
    near, limit = min(DENS_TOP, len(ids) - 1), min(limit, len(ids) - 1)
    for a in range(len(ids) if near > 0 else 0):
        cos = vecs @ vecs[a]
        low = s @ s[a]
        cos[a] = low[a] = -9
        near_c, near_l = np.argpartition(-cos, near)[:near], np.argpartition(-low, near)[:near]
        cand = np.union1d(np.argpartition(-cos, limit)[:limit], np.argpartition(-low, limit)[:limit])
        rows.append(pair_features(cos[cand], low[cand], bgc[a], bgl[a], np.minimum(sides[cand], sides[a]),
                                  density(cos[near_c], bgc[a]), density(low[near_l], bgl[a])))
    return np.concatenate(rows) if rows else np.zeros((0, len(pair_features(np.zeros(1), np.zeros(1), 0, 0, 1)[0])))


ORDER = "score"  # "score": as search ranks (retrieval.searcher.RANK_BY_COPY); "tiers": copies (at the threshold) by
# copy score, then the rest by cosine (measured: leave-one-kind-out top-1 0.932 against 0.952, docs/benchmarks.md section 7.1)


def ranked(scorer: CopyScorer, rec: QueryRecord, use_views: bool = False) -> tuple[list[int], list[float], bool]:
    """(ids, copy scores) in search order (see ORDER), and whether the views ran."""
    best: dict[int, tuple[float, float]] = {}

    def merge(j: int) -> None:
        p = scorer.probability(rec.x(j)) if len(rec.ids[j]) else np.zeros(0)
        for iid, pi, ci in zip(rec.ids[j].tolist(), p.tolist(), rec.cos[j].tolist()):
            if iid not in best or pi > best[iid][0]:
                best[iid] = (pi, ci)

    merge(0)
    ran = use_views and not any(p >= scorer.threshold for p, _ in best.values())
    if ran:
        for j in range(1, len(rec.ids)):
            merge(j)
    if ORDER == "score":  # as search ranks: plausible copies by copy score, then the rest by cosine
        from lookalike.retrieval.searcher import RANK_BY_COPY

        order = sorted(best, key=lambda i: (best[i][0] < RANK_BY_COPY,
                                            -best[i][0] if best[i][0] >= RANK_BY_COPY else -best[i][1]))
    else:
        order = sorted(best, key=lambda i: (best[i][0] < scorer.threshold,
                                            -best[i][0] if best[i][0] >= scorer.threshold else -best[i][1]))
    return order, [best[i][0] for i in order], ran


def evaluate(scorer: CopyScorer, records: list[QueryRecord], k: int = 10, use_views: bool = False) -> dict:
    """Figures of ``records`` under ``scorer``: per kind and overall top-1/top-5 (matched queries), µAP (all),
    precision / recall of "copy" at the threshold, share of queries that ran the views."""
    return _evaluate_mixed([(r, scorer) for r in records], k, use_views) | {"threshold": round(scorer.threshold, 4)}


def _train_rows(records: list[QueryRecord], mask: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [neg], [np.zeros(len(neg))]
    for r, m in zip(records, mask):
        if m and len(r.ids[0]):
            xs.append(r.x(0))
            ys.append((r.ids[0] == r.target).astype(np.float64))
    return np.concatenate(xs), np.concatenate(ys)


def fit_on(records: list[QueryRecord], mask: np.ndarray, neg: np.ndarray, bg: CopyScorer, model: str,
           l2: float = 1.0) -> CopyScorer:
    """A scorer fitted on the queries in ``mask`` (+ the gallery negatives), threshold F1-best on them."""
    from lookalike.training.calibrate import best_threshold, make_scorer

    x, y = _train_rows(records, mask, neg)
    s = make_scorer(model, x, y, 0.5, (bg.bg_vectors, bg.bg_signatures), l2)
    sel = [r for r, m in zip(records, mask) if m]
    tops = [(ranked(s, r, use_views=False)) for r in sel]
    p = np.asarray([ps[0] if ps else 0.0 for _, ps, _ in tops])
    ok = np.asarray([bool(o) and o[0] == r.target for (o, _, _), r in zip(tops, sel)])
    s.threshold = best_threshold(p, ok, sum(r.target >= 0 for r in sel))
    return s


def loko(records: list[QueryRecord], neg: np.ndarray, bg: CopyScorer, model: str, k: int = 10,
         l2: float = 1.0) -> tuple[dict, dict]:
    """Leave-one-kind-out (x 2 photo folds) figures: each query scored by a scorer that saw neither its kind nor
    its photo."""
    from lookalike.training.calibrate import leave_one_kind_out

    held: list[tuple[QueryRecord, CopyScorer]] = []
    thresholds = []
    for _kind, _fold, train, test in leave_one_kind_out([r.kind for r in records], [r.fold for r in records]):
        s = fit_on(records, train, neg, bg, model, l2)
        thresholds.append(s.threshold)
        held += [(r, s) for r, t in zip(records, test) if t]
    span = {"thresholds": [round(min(thresholds), 4), round(max(thresholds), 4)]}
    # each record scored by its own held-out scorer: as search ranks by default (no views), and with --views auto
    return _evaluate_mixed(held, k, False) | span, _evaluate_mixed(held, k, True) | span


def _evaluate_mixed(held: list[tuple[QueryRecord, CopyScorer]], k: int, use_views: bool) -> dict:
    """:func:`evaluate` where each record has its own scorer (µAP over the held-out scores together)."""
    records = [r for r, _ in held]
    pre = []
    for r, s in held:
        order, ps, ran = ranked(s, r, use_views)
        pre.append((order[:k], ps[:k], ran, s.threshold))
    kinds = [r.kind for r in records]
    ranks = np.asarray([o.index(r.target) + 1 if r.target in o else 0 for r, (o, _, _, _) in zip(records, pre)])
    matched = np.asarray([r.target >= 0 for r in records])
    top_p = np.asarray([ps[0] if ps else 0.0 for _, ps, _, _ in pre])
    said = np.asarray([tp >= t for tp, (_, _, _, t) in zip(top_p, pre)])
    ok = np.asarray([bool(o) and o[0] == r.target for r, (o, _, _, _) in zip(records, pre)])

    def block(m: np.ndarray) -> dict:
        mm = m & matched
        rk = ranks[mm]
        n_said = int((said & m).sum())
        return {"top1": round(float(np.mean(rk == 1)), 4) if len(rk) else 0.0,
                "top5": round(float(np.mean((rk >= 1) & (rk <= 5))), 4) if len(rk) else 0.0,
                "n": int(mm.sum()), "n_unmatched": int((m & ~matched).sum()),
                "precision": round(float((said & ok & m).sum() / n_said), 4) if n_said else 1.0,
                "recall": round(float((said & ok & m).sum() / max(int(mm.sum()), 1)), 4)}

    pair_s = np.asarray([p for _, ps, _, _ in pre for p in ps])
    pair_pos = np.asarray([i == r.target for r, (o, _, _, _) in zip(records, pre) for i in o])
    out = block(np.ones(len(records), bool))
    out["muap"] = round(micro_ap(pair_s, pair_pos, int(matched.sum())), 4)
    out["views_share"] = round(float(np.mean([ran for _, _, ran, _ in pre])), 4)
    out["per_group"] = {kd: block(np.asarray([x == kd for x in kinds])) for kd in dict.fromkeys(kinds)}
    return out


def peer_by_kind(gallery, queries: list[tuple[str, str, int, int, Path]], k: int, log=None) -> tuple[dict, str]:
    """imagededup PHash / DHash per kind on the same gallery and query files (matched queries' top-1 / top-5)."""
    res, status = run_peer([str(p) for p in gallery.paths], [str(q[4]) for q in queries], k, log=log)
    if res is None:
        return {}, status
    out = {}
    for method, r in res.items():
        ms = MethodScore()
        kinds = []
        for (kind, photo, _f, target, _p), topk, scores in zip(queries, r["topk"], r["scores"]):
            tgt = str(gallery.originals[photo]) if target >= 0 else None
            names = [str(gallery.paths[i]) for i in topk]
            ms.add(names, scores, tgt if tgt is not None else "\0none", r["ms_per_query"])
            kinds.append(kind)
        matched = np.asarray([q[3] >= 0 for q in queries])
        rk = np.asarray(ms.ranks)
        per = {}
        for kd in dict.fromkeys(kinds):
            m = np.asarray([x == kd for x in kinds]) & matched
            per[kd] = {"top1": round(float(np.mean(rk[m] == 1)), 4), "top5": round(float(np.mean((rk[m] >= 1) & (rk[m] <= 5))), 4)}
        out[f"imagededup-{method}"] = {
            "top1": round(float(np.mean(rk[matched] == 1)), 4),
            "muap": round(micro_ap(np.asarray(ms.pair_scores), np.asarray(ms.pair_positive), int(matched.sum())), 4),
            "per_group": per}
    return out, status


def make_queries(photos, indexed: set[str], gallery, engine, kinds: list[str], qdir: Path, seed: int,
                 progress: bool = True, log=None) -> list[tuple[str, str, int, int, Path]]:
    """Every photo x kind as a JPEG q95 file in ``qdir`` (made once): (kind, photo, fold, target id, path)."""
    from lookalike.data.augly_edits import augly_edit
    from lookalike.data.edits import apply_edit

    def edit(im, kind: str, seed: int):
        if kind.startswith("edit-"):  # lookalike's own edits (data/edits.py): edit-NAME-STRENGTH
            _, name, strength = kind.split("-", 2)
            return apply_edit(im, name, strength, seed=seed)
        return augly_edit(im, kind, seed=seed)

    qdir.mkdir(parents=True, exist_ok=True)
    target_ids = {}
    for name in indexed:
        target_ids[name] = engine.store.id_for_path(str(gallery.originals[name].resolve()))
    out = []
    t0 = time.perf_counter()
    for pi, (name, im) in enumerate(photos):
        for ki, kind in enumerate(kinds):
            p = qdir / f"{name}__{kind}.jpg"
            if not p.is_file():
                q = edit(im, kind, seed * 1_000_003 + pi * 1000 + ki)
                tmp = p.with_suffix(".tmp.jpg")
                q.save(tmp, quality=95)
                tmp.replace(p)
            tid = target_ids.get(name)
            out.append((kind, name, photo_fold(name), -1 if tid is None else int(tid), p))
        if progress and (pi + 1) % 20 == 0:
            print(f"bench: AugLy copies of {pi + 1}/{len(photos)} photos ({time.perf_counter() - t0:.0f} s)",
                  file=log or sys.stderr)
    return out


def run_suite(photos, distractors, work: Path, model: str, label: str, kinds: list[str], fit: bool,
              save: Path | None = None, k: int = 10, seed: int = 0, peer: bool = True, progress: bool = True,
              log=None, precision: str | None = None, l2: float = 1.0) -> dict:
    """Run the suite; returns the result dict (see the module docstring)."""
    from lookalike.retrieval.calibration import load_scorer
    from lookalike.training.calibrate import background_arrays

    from .common import model_slug

    indexed = {n for n, _ in photos if int(hashlib.sha256(f"idx{n}".encode()).hexdigest(), 16) % 2 == 0}
    gallery = build_gallery(work / f"augly-gallery-{label}-{len(distractors)}", [(n, im) for n, im in photos if n in indexed],
                            distractors)
    engine = open_index(work / f"augly-index-{label}-{len(distractors)}-{model_slug(model, precision)}", gallery, model,
                        progress, precision)
    try:
        queries = make_queries(photos, indexed, gallery, engine, kinds, work / f"augly-queries-{label}-seed{seed}",
                               seed, progress, log)
        shipped = load_scorer(engine.model_name, engine.dim)
        if fit or shipped is None:
            vecs, sigs = background_arrays(engine.embed)
            nf = len(pair_features(np.zeros(1), np.zeros(1), 0.0, 0.0, 1.0)[0])
            bg = CopyScorer(model, np.zeros(nf), np.ones(nf), np.zeros(nf), 0.0, 0.5, vecs, sigs)
        else:
            bg = shipped
        t0 = time.perf_counter()
        records = []
        for kind in kinds:  # cached per kind on dev: the same queries and index give the same candidates
            todo = [q for q in queries if q[0] == kind]
            cache = work / f"augly-records-{label}-seed{seed}-{kind}-{model_slug(model, precision)}.npz"
            if fit and cache.is_file():
                records += load_records(cache)
                continue
            part = collect(engine, bg, todo, progress, log)
            if fit:
                save_records(part, cache)
            records += part
        print(f"bench: features of {len(records)} queries in {time.perf_counter() - t0:.0f} s", file=log or sys.stderr)
        result: dict = {"bench": "copies-augly", "photo_set": label, "model": model, "n_photos": len(photos),
                        "n_indexed": len(indexed), "n_gallery": len(gallery.paths), "n_queries": len(queries),
                        "kinds": kinds, "k": k, "seed": seed, "methods": {}}
        if fit:
            neg = gallery_negatives(engine, bg)
            plain, views = loko(records, neg, bg, model, k, l2)
            result["methods"]["calibrated (leave-one-kind-out)"] = plain
            result["methods"]["calibrated (leave-one-kind-out), --views auto"] = views
            final = fit_on(records, np.ones(len(records), bool), neg, bg, model, l2)
            final.info = {"fitted_on": f"{label} photos, AugLy suite ({len(kinds)} kinds, {len(records)} queries)",
                          "l2": l2, "seed": seed}
            result["methods"]["calibrated (fitted on all, in-sample)"] = evaluate(final, records, k, use_views=False)
            result["scorer"] = {"threshold": round(final.threshold, 4),
                                "coef": dict(zip(__import__("lookalike.retrieval.calibration", fromlist=["FEATURES"]).FEATURES,
                                                 np.round(final.coef, 4).tolist())), "intercept": round(final.intercept, 4)}
            if save is not None:
                final.save(save)
                result["scorer"]["path"] = str(save)
        else:
            result["methods"]["calibrated (shipped)"] = evaluate(bg, records, k, use_views=False)
            result["methods"]["calibrated (shipped), --views auto"] = evaluate(bg, records, k, use_views=True)
        if peer:
            found, status = peer_by_kind(gallery, queries, k, log)
            result["methods"].update(found)
            result["peer"] = status
    finally:
        engine.close()
    return result


def format_suite(result: dict) -> str:
    """The printed table: top-1 per kind per method, then overall top-1, µAP, precision / recall at the threshold."""
    methods = list(result["methods"])
    kinds = result["kinds"]
    short = [m.replace("calibrated ", "cal ").replace("imagededup-", "")[:22] for m in methods]
    lines = [f"copies (AugLy suite): {result['photo_set']} photos ({result['n_photos']}, {result['n_indexed']} indexed), "
             f"gallery {result['n_gallery']}, {result['n_queries']} queries (half without a match); top-1",
             f"{'kind':<15}" + "".join(f" {s:>22}" for s in short)]
    for kd in kinds:
        lines.append(f"{kd:<15}" + "".join(f" {result['methods'][m]['per_group'].get(kd, {}).get('top1', float('nan')):>22.3f}"
                                           for m in methods))
    for key in ("top1", "top5", "muap", "precision", "recall", "views_share"):
        lines.append(f"{key:<15}" + "".join(f" {result['methods'][m].get(key, float('nan')):>22.3f}" for m in methods))
    return "\n".join(lines)
