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

__all__ = ["BUSY", "Gallery", "build_gallery", "micro_ap", "MethodScore", "imagededup_python", "run_peer",
           "write_result", "cache_root", "model_slug", "open_index", "engine_search", "peer_scores",
           "dct_signature",
           "low_detail", "gallery_matrix", "Levers", "run_levers"]

BUSY = "busy machine: 2 CPU cores shared with other jobs"


def cache_root() -> Path:
    """``$LOOKALIKE_BENCH_CACHE`` or ``~/.cache/lookalike-bench``."""
    return Path(os.environ.get("LOOKALIKE_BENCH_CACHE") or Path.home() / ".cache" / "lookalike-bench")


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
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", "imagededup"], capture_output=True, text=True,
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
    """Search one in-memory query as `lookalike search` does: (gallery names, scores, ms). ``views`` adds query-time
    views (Engine.search's ``views``: best score per image)."""
    t0 = time.perf_counter()
    res = engine.search(image, k=k, denoise=denoise, lowfreq=lowfreq, views=views)
    ms = (time.perf_counter() - t0) * 1000.0
    best: dict[str, float] = {}
    for r in res:
        n = gallery.name_of(r.path)
        best[n] = max(best.get(n, -1.0), r.score)
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:k]
    return [n for n, _ in ranked], [s for _, s in ranked], ms


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

    p.add_argument("--photos", choices=("dev", "eval"), default="dev",
                   help="dev: Debian/scikit-learn/matplotlib photos (tune here); eval: scikit-image photos (report only)")
    p.add_argument("--distractors", type=nonneg_int, default=1500, help="other images in the gallery (default 1500)")
    p.add_argument("--lowfreq", default="", help="comma-separated weights of a fused low-frequency DCT channel")
    p.add_argument("--low-detail", action="store_true", help="also score a 64 px view of every gallery image (max)")
    p.add_argument("--rot-views", action="store_true", help="also score quarter turns of every gallery image (max)")
    p.add_argument("--max-photos", type=positive_int, default=None, help="use only the first N photos")
    p.add_argument("--max-side", type=positive_int, default=1024, help="photos are capped to this long side (default 1024)")
    p.add_argument("-k", type=positive_int, default=10, help="results per query (top-5 and µAP use them)")
    p.add_argument("--no-peer", action="store_true", help="skip imagededup")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--work", default=None, help="gallery and index folder, reused by reruns (default: cache)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default=None,
                   help="inference precision of the gallery index (default: what a new index gets here)")
    p.add_argument("-q", "--quiet", action="store_true")


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


def dct_signature(im: Image.Image) -> np.ndarray:
    """Low-frequency channel: what the index stores per image (lookalike.indexer.signature)."""
    from lookalike.indexer.signature import lowfreq_signature

    return lowfreq_signature(im)


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


_GALLERY_VIEWS = {"lowdetail": low_detail, "rot90": lambda im: im.rotate(90, expand=True),
                  "rot270": lambda im: im.rotate(270, expand=True)}


@dataclass
class Levers:
    """Cheap additions to a plain search, scored over the whole gallery: a low-frequency DCT channel fused with
    weight ``w`` (one method per weight), and extra views of every gallery image, indexed beside it (max score):
    a low-detail view (64 px) and quarter turns (``rot``). The query is still embedded once."""

    lowfreq: tuple[float, ...] = ()
    low_detail: bool = False
    rot: bool = False

    def names(self) -> list[str]:
        out = [f"+lowfreq {w:g}" for w in self.lowfreq]
        if self.low_detail:
            out += ["+lowdetail"] + [f"+lowdetail+lowfreq {w:g}" for w in self.lowfreq]
        if self.rot:
            out += ["+rot"] + (["+lowdetail+rot"] if self.low_detail else [])
        return out

    def views(self) -> list[str]:
        return ["lowdetail"] * self.low_detail + ["rot90", "rot270"] * self.rot


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
    """MethodScores of each lever for ``queries`` (an iterable of images); ms = query embedding + scoring."""
    if not levers.names():
        return {}
    g = gallery_matrix(engine, gallery)
    sigs = np.stack([dct_signature(Image.open(p)) for p in gallery.paths]) if levers.lowfreq else None
    gv = {v: _view_matrix(model, gallery, work, v, progress, engine.config.precision) for v in levers.views()}
    out = {n: MethodScore() for n in levers.names()}
    stems = [p.stem for p in gallery.paths]
    for im, target in zip(queries, targets):
        t0 = time.perf_counter()
        v = engine.embed([im])[0]
        neural = g @ v
        t_base = time.perf_counter() - t0
        variants: list[tuple[str, np.ndarray, float]] = []
        t1 = time.perf_counter()
        low_sim = sigs @ dct_signature(im) if sigs is not None else None
        t_low = time.perf_counter() - t1
        for w in levers.lowfreq:
            variants.append((f"+lowfreq {w:g}", neural + w * low_sim, t_low))
        if levers.low_detail:
            t2 = time.perf_counter()
            both = np.maximum(neural, gv["lowdetail"] @ v)
            t_ld = time.perf_counter() - t2
            variants.append(("+lowdetail", both, t_ld))
            for w in levers.lowfreq:
                variants.append((f"+lowdetail+lowfreq {w:g}", both + w * low_sim, t_ld + t_low))
        if levers.rot:
            t3 = time.perf_counter()
            rot = np.maximum(neural, np.maximum(gv["rot90"] @ v, gv["rot270"] @ v))
            t_rot = time.perf_counter() - t3
            variants.append(("+rot", rot, t_rot))
            if levers.low_detail:
                variants.append(("+lowdetail+rot", np.maximum(rot, both), t_rot + t_ld))
        for name, score, t_extra in variants:
            order = np.argsort(-score, kind="stable")[:k]
            out[name].add([stems[i] for i in order], score[order].tolist(), target, (t_base + t_extra) * 1000.0)
    return out
