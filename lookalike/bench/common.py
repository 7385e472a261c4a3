"""What the copy and noisy-photo benchmarks share: the gallery folder and index, µAP, the imagededup peer, output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from lookalike.fsutil import atomic_write_text
from lookalike.settings import PRECISIONS, bench_cache_root

__all__ = ["BUSY", "Gallery", "build_gallery", "micro_ap", "MethodScore", "imagededup_python", "run_peer",
           "write_result", "cache_root", "model_slug", "open_index", "engine_search", "peer_scores", "photos_or_fail",
           "low_detail", "gallery_matrix", "Levers", "run_levers"]

BUSY = "busy machine: 2 CPU cores shared with other jobs"


def cache_root() -> Path:
    """``$LOOKALIKE_BENCH_CACHE`` or ``~/.cache/lookalike-bench``."""
    return bench_cache_root()


@dataclass
class Gallery:
    """Image files of a benchmark gallery: ``originals`` (query sources, by name) and distractors."""

    folder: Path
    paths: list[Path]                      # every gallery file, originals first
    originals: dict[str, Path]             # photo name -> its gallery file
    names: dict[str, str] = field(default_factory=dict)  # absolute path -> name

    def name_of(self, path: str) -> str:
        return self.names.get(os.path.abspath(path), Path(path).stem)


def build_gallery(folder: str | os.PathLike, photos: list[tuple[str, Image.Image]],
                  distractors: list[tuple[str, Image.Image]]) -> Gallery:
    """Write photos (JPEG q95) and distractors (PNG) into ``folder``, keeping files already there."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    originals: dict[str, Path] = {}
    for kind, items in (("photo", photos), ("distractor", distractors)):
        for name, im in items:
            p = root / kind / (f"{name}.jpg" if kind == "photo" else f"{name}.png")
            if not p.is_file():
                p.parent.mkdir(parents=True, exist_ok=True)
                im.convert("RGB").save(p, **({"quality": 95} if kind == "photo" else {}))
            paths.append(p)
            if kind == "photo":
                originals[name] = p
    return Gallery(root, paths, originals, {os.path.abspath(p): p.stem for p in paths})


def micro_ap(scores: np.ndarray, positive: np.ndarray, n_positive: int) -> float:
    """µAP (DISC21): average precision over every (query, gallery, score) prediction ranked together by score.

    ``n_positive`` is the number of true (query, original) pairs, found or not; missed pairs count as recall lost.
    """
    if n_positive <= 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hit = np.asarray(positive, dtype=bool)[order]
    if not hit.any():
        return 0.0
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float(precision[hit].sum() / n_positive)


@dataclass
class MethodScore:
    """Per-query outcomes of one search method: rank of the original (0 = not in the top k) and the returned pairs."""

    ranks: list[int] = field(default_factory=list)
    pair_scores: list[float] = field(default_factory=list)
    pair_positive: list[bool] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    top1: list[str] = field(default_factory=list)

    def add(self, names: list[str], scores: list[float], target: str, ms: float) -> None:
        rank = names.index(target) + 1 if target in names else 0
        self.ranks.append(rank)
        self.pair_scores.extend(scores)
        self.pair_positive.extend(n == target for n in names)
        self.ms.append(ms)
        self.top1.append(names[0] if names else "")

    def summary(self, groups: list[str] | None = None) -> dict:
        """top-1 / top-5 overall and per group, µAP, mean ms per query."""
        r = np.asarray(self.ranks)
        out = {"top1": round(float(np.mean(r == 1)), 4) if len(r) else 0.0,
               "top5": round(float(np.mean((r >= 1) & (r <= 5))), 4) if len(r) else 0.0,
               "muap": round(micro_ap(np.asarray(self.pair_scores), np.asarray(self.pair_positive), len(r)), 4),
               "ms_per_query": round(float(np.mean(self.ms)), 1) if self.ms else 0.0, "n": int(len(r))}
        if groups is not None:
            per: dict[str, dict] = {}
            for g in dict.fromkeys(groups):
                m = np.asarray([x == g for x in groups])
                per[g] = {"top1": round(float(np.mean(r[m] == 1)), 4),
                          "top5": round(float(np.mean((r[m] >= 1) & (r[m] <= 5))), 4), "n": int(m.sum())}
            out["per_group"] = per
        return out


def imagededup_python(log=None) -> tuple[str | None, str]:
    """The Python of a venv holding imagededup (made on first use); (None, reason) when it cannot be installed.

    The venv reuses this interpreter's packages (torch, numpy, ...) through a .pth file, so pip adds only imagededup.
    """
    venv = cache_root() / "imagededup-venv"
    py = venv / "bin" / "python"
    ok = py.is_file() and subprocess.run([str(py), "-c", "import imagededup"], capture_output=True).returncode == 0
    if ok:
        return str(py), "ready"
    try:
        print(f"bench: creating {venv} with imagededup (once)", file=log or sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        ours = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
        Path(site, "_lookalike_base.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", "imagededup==0.3.3.post2"], capture_output=True, text=True,
                             timeout=1800)
        if res.returncode != 0:
            return None, f"pip install imagededup failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create the imagededup venv ({exc})"
    return str(py), "installed"


def run_peer(gallery: list[str], queries: list[str], k: int, methods: tuple[str, ...] = ("phash", "dhash"),
             seed: int = 0, log=None) -> tuple[dict | None, str]:
    """imagededup's hashes over the same gallery and query files: ({method: result}, status) or (None, reason)."""
    py, status = imagededup_python(log)
    if py is None:
        return None, status
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp, "spec.json"), Path(tmp, "out.json")
        spec.write_text(json.dumps({"gallery": gallery, "queries": queries, "k": k, "methods": list(methods),
                                    "seed": seed}), encoding="utf-8")
        t0 = time.perf_counter()
        res = subprocess.run([py, str(Path(__file__).with_name("imagededup_peer.py")), str(spec), str(out)],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if res.returncode != 0:
            return None, f"imagededup run failed: {(res.stderr or '').strip().splitlines()[-1:]}"
        print(f"bench: imagededup {'/'.join(methods)} on {len(queries)} queries in {time.perf_counter() - t0:.0f} s",
              file=log or sys.stderr)
        return json.loads(out.read_text(encoding="utf-8")), status


def write_result(result: dict, json_path: str | os.PathLike) -> Path:
    """Write the result JSON atomically; returns its path."""
    p = Path(json_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(result, indent=1))
    return p


def model_slug(model: str, precision: str | None = None) -> str:
    """A folder-name form of ``model`` (and of its precision when not fp32; None: the default precision of a new
    index); a checkpoint also gets its file's size and mtime, so a retrained file at the same path never reuses an
    index built with the old weights."""
    from lookalike.retrieval.runtime import default_precision

    slug = model.replace(":", "_").replace("/", "_").replace("@", "_")
    precision = precision or default_precision(model)
    if precision != "fp32":
        slug += f"-{precision}"
    if model.startswith("checkpoint:") and os.path.isfile(model[len("checkpoint:"):]):
        st = os.stat(model[len("checkpoint:"):])
        slug += f"-{st.st_size}-{int(st.st_mtime)}"
    return slug


def open_index(folder: str | os.PathLike, gallery: Gallery, model: str, progress: bool = True,
               precision: str | None = None):
    """The benchmark index of ``gallery`` with ``model`` in ``folder`` (added incrementally: reruns reuse it)."""
    from lookalike import Engine

    engine = Engine.open(folder, model=model, precision=precision)
    engine.add([gallery.folder], progress=progress, warn=None)
    return engine


def engine_search(engine, gallery: Gallery, image: Image.Image, k: int, views: str = "none",
                  denoise: str | None = None, lowfreq: str = "auto") -> tuple[list[str], list[float], float]:
    """Search one in-memory query as `lookalike search` does: (gallery names in its order, scores, ms); the score
    is the copy score where the model has one (search ranks by it), else the cosine. ``views`` adds query-time
    views (Engine.search's ``views``: best score per image)."""
    t0 = time.perf_counter()
    res = engine.search(image, k=k, denoise=denoise, lowfreq=lowfreq, views=views)
    ms = (time.perf_counter() - t0) * 1000.0
    ranked: dict[str, float] = {}
    for r in res:  # search's own order; an image listed twice (two paths) keeps its first place
        ranked.setdefault(gallery.name_of(r.path), r.copy_score if r.copy_score is not None else r.score)
    return list(ranked)[:k], list(ranked.values())[:k], ms


def peer_scores(peer: dict, gallery: Gallery, targets: list[str]) -> dict[str, MethodScore]:
    """imagededup output (indices into ``gallery.paths``) as MethodScores named ``imagededup-<method>``."""
    out = {}
    for method, res in peer.items():
        ms = MethodScore()
        for topk, scores, target in zip(res["topk"], res["scores"], targets):
            ms.add([gallery.paths[i].stem for i in topk], scores, target, res["ms_per_query"])
        out[f"imagededup-{method}"] = ms
    return out


def add_shared_arguments(p) -> None:
    """Options both real-photo benchmarks take (``bench copies``, ``bench noisy`` and their scripts)."""
    from lookalike.argtypes import nonneg_int, positive_int

    p.add_argument("--photos", choices=("dev", "dev-wide", "eval"), default="dev",
                   help="dev: Debian/scikit-learn/matplotlib photos (tune here); dev-wide: dev + GCompris/Jigzo photos; "
                        "eval: scikit-image photos (report only)")
    p.add_argument("--distractors", type=nonneg_int, default=1500, help="other images in the gallery (default 1500)")
    p.add_argument("--lowfreq", default="", help="comma-separated weights of a fused low-frequency DCT channel")
    p.add_argument("--low-detail", action="store_true", help="also score a 64 px view of every gallery image (max)")
    p.add_argument("--rot-views", action="store_true", help="also score quarter turns of every gallery image (max)")
    p.add_argument("--crop-views", action="store_true",
                   help="also score 5 half-side windows of every gallery image (4 corners + centre; max)")
    p.add_argument("--multi-scale", action="store_true",
                   help="a small query (long side 65-256 px) is also embedded at 64 px against the low-detail view")
    p.add_argument("--max-photos", type=positive_int, default=None, help="use only the first N photos")
    p.add_argument("--max-side", type=positive_int, default=1024, help="photos are capped to this long side (default 1024)")
    p.add_argument("-k", type=positive_int, default=10, help="results per query (top-5 and µAP use them)")
    p.add_argument("--no-peer", action="store_true", help="skip imagededup")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--work", default=None, help="gallery and index folder, reused by reruns (default: cache)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="inference precision of the gallery index (default: what a new index gets here)")
    p.add_argument("-q", "--quiet", action="store_true")


def photos_or_fail(args) -> list | None:
    """The ``--photos`` set, capped by ``--max-side`` and ``--max-photos``; None (after a one-line message) when
    none is installed."""
    from lookalike.data.photosets import photo_set

    photos = photo_set(args.photos, args.max_side)[: args.max_photos]
    if not photos:
        print(f"lookalike: --photos {args.photos}: no photos found (dev needs mate-backgrounds and ukui-wallpapers, "
              "dev-wide also gcompris-qt-data and jigzo-data)", file=sys.stderr)
        return None
    return photos


def peer_on_queries(qdir: Path, named: list[tuple[str, Callable[[], Image.Image]]], gallery: Gallery,
                    targets: list[str], k: int, seed: int = 0, log=None) -> tuple[dict[str, MethodScore], str]:
    """imagededup's hashes on the same queries, each saved once as ``qdir/NAME.png``: (its MethodScores, status)."""
    qdir.mkdir(parents=True, exist_ok=True)
    qpaths = []
    for name, make in named:
        p = qdir / f"{name}.png"
        if not p.is_file():
            make().save(p)
        qpaths.append(str(p))
    res, status = run_peer([str(p) for p in gallery.paths], qpaths, k, seed=seed, log=log)
    if res is None:
        return {}, status
    return peer_scores(res, gallery, targets), f"imagededup {status}"


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
