"""Research levers of the copy and noisy-photo benchmarks: cheap additions to a plain search scored over the whole
gallery (a fused low-frequency channel, low-detail / turned / cropped views of every gallery image, query views,
multi-scale queries). The figures they made are in docs/benchmarks.md; the shipped search kept what won there.

    python -m benchmarks.levers copies --photos dev --low-detail --rot-views --lowfreq 0.5
    python -m benchmarks.levers noisy --photos dev --lowfreq 0.3,0.5
Each takes the options of ``lookalike bench copies|noisy`` plus the lever options below; imagededup comes from
``benchmarks.peers`` (a pinned venv) unless ``--no-peer``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.bench.common import Gallery, MethodScore, model_slug, open_index

__all__ = ["Levers", "run_levers", "low_detail", "CROP_VIEWS", "add_lever_arguments", "levers_from_args", "main"]


def low_detail(im: Image.Image, side: int = 64) -> Image.Image:
    """A low-detail view: long side ``side`` px (what a thumbnail or a heavy blur leaves)."""
    im = im.convert("RGB")
    f = side / max(im.size)
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BILINEAR) if f < 1 else im


def gallery_matrix(engine, gallery: Gallery) -> np.ndarray:
    """The index's stored vectors as a (len(gallery.paths), dim) matrix in gallery order (public Engine API only)."""
    ids, vecs = engine.vectors()
    pos = {p.stem: i for i, p in enumerate(gallery.paths)}
    out = np.zeros((len(gallery.paths), vecs.shape[1]), np.float32)
    by_id = dict(zip(ids.tolist(), vecs))
    for r in engine.search_vector(vecs[0], k=len(ids)):
        for p in r.paths:
            name = Path(p).stem
            if name in pos:
                out[pos[name]] = by_id[r.id]
    return out


def _window(fx: float, fy: float, side: float = 0.5):
    """A view of the window of ``side`` x each side at relative offset (fx, fy) of the free space."""
    def view(im: Image.Image) -> Image.Image:
        w, h = im.size
        cw, ch = max(1, round(w * side)), max(1, round(h * side))
        x, y = round((w - cw) * fx), round((h - ch) * fy)
        return im.crop((x, y, x + cw, y + ch))
    return view


CROP_VIEWS = {"crop-tl": _window(0, 0), "crop-tr": _window(1, 0), "crop-bl": _window(0, 1), "crop-br": _window(1, 1),
              "crop-c": _window(0.5, 0.5)}
_GALLERY_VIEWS = {"lowdetail": low_detail, "rot90": lambda im: im.rotate(90, expand=True),
                  "rot270": lambda im: im.rotate(270, expand=True), **CROP_VIEWS}


@dataclass
class Levers:
    """Cheap additions to a plain search, scored over the whole gallery: a low-frequency DCT channel fused with
    weight ``w`` (one method per weight), and extra views of every gallery image, indexed beside it (max score):
    a low-detail view (64 px) and quarter turns (``rot``). The query is embedded once, except for two query-side
    levers: ``query_views`` ("mirror" or "rot": the query's mirror / quarter turns also embedded, max over views)
    and ``multi_scale`` (a query whose long side is at most ``small_side`` px is also embedded at the 64 px of the
    low-detail gallery view, so a thumbnail meets every gallery image at the same scale)."""

    lowfreq: tuple[float, ...] = ()
    low_detail: bool = False
    rot: bool = False
    query_views: str = "none"
    multi_scale: bool = False
    small_side: int = 256
    crops: bool = False

    def names(self) -> list[str]:
        out = [f"+lowfreq {w:g}" for w in self.lowfreq]
        if self.low_detail:
            out += ["+lowdetail"] + [f"+lowdetail+lowfreq {w:g}" for w in self.lowfreq]
        if self.rot:
            out += ["+rot"] + (["+lowdetail+rot"] if self.low_detail else [])
        for qv in self._query_view_sets():
            out += [f"+views:{qv}", *([f"+lowdetail+views:{qv}"] if self.low_detail else []),
                    *([f"+lowdetail+rot+views:{qv}"] if self.low_detail and self.rot else [])]
        if self.multi_scale:
            out += ["+ms"] + (["+lowdetail+ms"] if self.low_detail else []) + (
                ["+lowdetail+rot+ms"] if self.low_detail and self.rot else [])
            out += [f"+lowdetail+rot+ms+views:{qv}" for qv in self._query_view_sets() if self.low_detail and self.rot]
        if self.crops:
            out += ["+crops"] + (["+lowdetail+crops"] if self.low_detail else [])
            out += [f"+lowdetail+crops+views:{qv}" for qv in self._query_view_sets() if self.low_detail]
        return out

    def _query_view_sets(self) -> list[str]:
        """Query-view sets measured: "rot" also gives "mirror" (its first view) for free."""
        return {"none": [], "mirror": ["mirror"], "rot": ["mirror", "rot"]}[self.query_views]

    def views(self) -> list[str]:
        return (["lowdetail"] * (self.low_detail or self.multi_scale) + ["rot90", "rot270"] * self.rot
                + list(CROP_VIEWS) * self.crops)

    def run(self, engine, gallery: Gallery, work: Path, model: str, queries, targets: list[str], k: int,
            progress: bool = True) -> dict[str, MethodScore]:
        """``run_levers`` with these levers (the hook ``run_copies`` / ``run_noisy`` call as ``extra``)."""
        return run_levers(engine, gallery, work, model, self, queries, targets, k, progress)


def _view_matrix(engine_model: str, gallery: Gallery, work: Path, view: str, progress: bool,
                 precision: str | None = None) -> np.ndarray:
    """Vectors of one view of every gallery image (files and index kept in ``work`` for reruns)."""
    folder = work / f"{gallery.folder.name}-{view}"
    paths = []
    for p in gallery.paths:
        q = folder / p.parent.name / (p.stem + ".png")
        if not q.is_file():
            q.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(p) as im:
                _GALLERY_VIEWS[view](im.convert("RGB")).save(q)
        paths.append(q)
    eng = open_index(work / f"index-{folder.name}-{model_slug(engine_model, precision)}", Gallery(folder, paths, {}),
                     engine_model, progress, precision)
    try:
        return gallery_matrix(eng, Gallery(folder, gallery.paths, {}))
    finally:
        eng.close()


def run_levers(engine, gallery: Gallery, work: Path, model: str, levers: Levers, queries, targets: list[str],
               k: int, progress: bool = True) -> dict[str, MethodScore]:
    """MethodScores of each lever for ``queries`` (an iterable of images); ms = query embedding(s) + scoring."""
    if not levers.names():
        return {}
    from lookalike.indexer.signature import lowfreq_signature
    from lookalike.retrieval.searcher import QUERY_VIEWS, VIEW_ALIASES, view_image as _view

    g = gallery_matrix(engine, gallery)
    sigs = np.stack([lowfreq_signature(Image.open(p)) for p in gallery.paths]) if levers.lowfreq else None
    gv = {v: _view_matrix(model, gallery, work, v, progress, engine.config.precision) for v in levers.views()}
    out = {n: MethodScore() for n in levers.names()}
    stems = [p.stem for p in gallery.paths]
    qviews = QUERY_VIEWS[VIEW_ALIASES.get(levers.query_views, levers.query_views)]
    for im, target in zip(queries, targets):
        t0 = time.perf_counter()
        v = engine.embed([im])[0]
        neural = g @ v
        t_base = time.perf_counter() - t0
        variants: list[tuple[str, np.ndarray, float]] = []
        t1 = time.perf_counter()
        low_sim = sigs @ lowfreq_signature(im) if sigs is not None else None
        t_low = time.perf_counter() - t1
        for w in levers.lowfreq:
            variants.append((f"+lowfreq {w:g}", neural + w * low_sim, t_low))
        t_ld = 0.0
        if levers.low_detail or levers.multi_scale:
            t2 = time.perf_counter()
            both = np.maximum(neural, gv["lowdetail"] @ v)
            t_ld = time.perf_counter() - t2
        if levers.low_detail:
            variants.append(("+lowdetail", both, t_ld))
            for w in levers.lowfreq:
                variants.append((f"+lowdetail+lowfreq {w:g}", both + w * low_sim, t_ld + t_low))
        t_rot = 0.0
        if levers.rot:
            t3 = time.perf_counter()
            rot = np.maximum(neural, np.maximum(gv["rot90"] @ v, gv["rot270"] @ v))
            t_rot = time.perf_counter() - t3
            variants.append(("+rot", rot, t_rot))
            if levers.low_detail:
                variants.append(("+lowdetail+rot", np.maximum(rot, both), t_rot + t_ld))
        qv_scores: dict[str, tuple[np.ndarray, float]] = {}  # query-view set -> (+lowdetail+rot score, s)
        qv_ld: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}  # query-view set -> (its vectors, low-detail score, s)
        if qviews:
            t4 = time.perf_counter()
            vv = engine.embed([_view(im, n) for n in qviews])
            t_each = (time.perf_counter() - t4) / len(qviews)  # the views are embedded as one batch
            for qv in levers._query_view_sets():
                t5 = time.perf_counter()
                sub = vv[: len(QUERY_VIEWS[VIEW_ALIASES.get(qv, qv)])]
                plain_v = np.maximum(neural, (g @ sub.T).max(axis=1))
                ld_v = np.maximum(plain_v, np.maximum(both, (gv["lowdetail"] @ sub.T).max(axis=1))) \
                    if levers.low_detail else None
                t_qv = t_each * len(sub) + time.perf_counter() - t5
                variants.append((f"+views:{qv}", plain_v, t_qv))
                if ld_v is not None:
                    variants.append((f"+lowdetail+views:{qv}", ld_v, t_qv + t_ld))
                    qv_ld[qv] = (sub, ld_v, t_qv + t_ld)
                    if levers.rot:
                        t6 = time.perf_counter()
                        rv = np.maximum(ld_v, np.maximum((gv["rot90"] @ sub.T).max(axis=1),
                                                         (gv["rot270"] @ sub.T).max(axis=1)))
                        rv = np.maximum(rv, rot)
                        qv_scores[qv] = (rv, t_qv + t_ld + t_rot + time.perf_counter() - t6)
                        variants.append((f"+lowdetail+rot+views:{qv}", rv, qv_scores[qv][1]))
        if levers.multi_scale:
            t7 = time.perf_counter()
            small = 64 < max(im.size) <= levers.small_side
            v64 = engine.embed([low_detail(im)])[0] if small else None
            ms_ld = np.maximum(both, gv["lowdetail"] @ v64) if small else both
            t_ms = time.perf_counter() - t7
            variants.append(("+ms", np.maximum(neural, gv["lowdetail"] @ v64) if small else neural, t_ms))
            if levers.low_detail:
                variants.append(("+lowdetail+ms", ms_ld, t_ld + t_ms))
                if levers.rot:
                    variants.append(("+lowdetail+rot+ms", np.maximum(ms_ld, rot), t_ld + t_rot + t_ms))
                    for qv, (rv, t_qv) in qv_scores.items():
                        variants.append((f"+lowdetail+rot+ms+views:{qv}", np.maximum(rv, ms_ld), t_qv + t_ms))
        if levers.crops:
            t8 = time.perf_counter()
            crops = np.max([gv[c] @ v for c in CROP_VIEWS], axis=0)
            t_crop = time.perf_counter() - t8
            variants.append(("+crops", np.maximum(neural, crops), t_crop))
            if levers.low_detail:
                variants.append(("+lowdetail+crops", np.maximum(both, crops), t_ld + t_crop))
                for qv, (sub, ld_v, t_qv) in qv_ld.items():
                    t9 = time.perf_counter()
                    cv = np.max([(gv[c] @ sub.T).max(axis=1) for c in CROP_VIEWS], axis=0)
                    variants.append((f"+lowdetail+crops+views:{qv}", np.maximum(np.maximum(ld_v, crops), cv),
                                     t_qv + t_crop + time.perf_counter() - t9))
        for name, score, t_extra in variants:
            order = np.argsort(-score, kind="stable")[:k]
            out[name].add([stems[i] for i in order], score[order].tolist(), target, (t_base + t_extra) * 1000.0)
    return out


def add_lever_arguments(p: argparse.ArgumentParser) -> None:
    """The lever options (on top of ``lookalike bench copies|noisy``'s)."""
    p.add_argument("--lowfreq", default="", help="comma-separated weights of a fused low-frequency DCT channel")
    p.add_argument("--low-detail", action="store_true", help="also score a 64 px view of every gallery image (max)")
    p.add_argument("--rot-views", action="store_true", help="also score quarter turns of every gallery image (max)")
    p.add_argument("--crop-views", action="store_true",
                   help="also score 5 half-side windows of every gallery image (4 corners + centre; max)")
    p.add_argument("--multi-scale", action="store_true",
                   help="a small query (long side 65-256 px) is also embedded at 64 px against the low-detail view")


def levers_from_args(args: argparse.Namespace, query_views: str = "none") -> Levers:
    """The levers the options ask for; SystemExit (one line) for a bad --lowfreq."""
    try:
        weights = tuple(float(w) for w in args.lowfreq.split(",") if w.strip())
    except ValueError:
        raise SystemExit(f"levers: --lowfreq {args.lowfreq}: expected comma-separated numbers") from None
    return Levers(weights, args.low_detail, args.rot_views, query_views, args.multi_scale, crops=args.crop_views)


def main(argv: list[str] | None = None) -> int:
    from lookalike.bench import copies, noisy

    from benchmarks.peers import use_imagededup

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="bench", required=True)
    for name, module in (("copies", copies), ("noisy", noisy)):
        p = sub.add_parser(name, help=f"lookalike bench {name} with the levers")
        module.add_arguments(p)
        add_lever_arguments(p)
    args = ap.parse_args(argv)
    if not args.no_peer:
        use_imagededup()
    if args.bench == "copies":
        levers = levers_from_args(args, "none" if args.views == "auto" else args.views)
        return copies.main(args, extra=levers)
    return noisy.main(args, extra=levers_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
