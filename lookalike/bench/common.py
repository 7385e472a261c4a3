"""What the copy and noisy-photo benchmarks share: the gallery folder and index, µAP, the imagededup peer (when the
user has it: nothing is installed at run time), the machine the figures were measured on, output."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
from PIL import Image

from lookalike.fsutil import atomic_write_text
from lookalike.settings import PRECISIONS, bench_cache_root, env

__all__ = ["Gallery", "build_gallery", "micro_ap", "MethodScore", "peer_python", "run_peer", "machine", "machine_line",
           "write_result", "cache_root", "model_slug", "open_index", "engine_search", "peer_scores", "photos_or_fail",
           "ExtraMethods"]


class ExtraMethods(Protocol):
    """More methods a benchmark run scores besides the shipped search (e.g. benchmarks/levers.py's levers)."""

    def names(self) -> list[str]: ...

    def run(self, engine: Any, gallery: Gallery, work: Path, model: str, queries: Iterable[Image.Image],
            targets: list[str], k: int, progress: bool = True) -> dict[str, MethodScore]: ...


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


def peer_python() -> tuple[str | None, str]:
    """A Python that can import imagededup, and how it was found: ``$LOOKALIKE_IMAGEDEDUP_PYTHON``, else this one
    when imagededup is installed here; (None, the reason in one line) otherwise. Nothing is installed."""
    configured = env("LOOKALIKE_IMAGEDEDUP_PYTHON")
    if configured:
        try:
            ok = subprocess.run([configured, "-c", "import imagededup"], capture_output=True).returncode == 0
        except OSError:
            ok = False
        if ok:
            return configured, "configured"
        return None, f"LOOKALIKE_IMAGEDEDUP_PYTHON={configured} cannot import imagededup; its rows are left out"
    if importlib.util.find_spec("imagededup") is not None:
        return sys.executable, "installed"
    return None, ("imagededup is not installed (pip install imagededup, or set LOOKALIKE_IMAGEDEDUP_PYTHON to a "
                  "Python that has it); its rows are left out")


def machine() -> dict:
    """What the figures were measured on: CPU count, load average (1, 5, 15 min) and processor."""
    return {"cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "processor": platform.processor() or platform.machine()}


def machine_line(info: dict | str) -> str:
    """``machine()`` in words, for a printed table (an older result file holds a string)."""
    if isinstance(info, str):
        return info
    return f"{info['cpu_count']} CPUs, load {info['load_avg'][0]:.1f} ({info['processor']})"


def run_peer(gallery: list[str], queries: list[str], k: int, methods: tuple[str, ...] = ("phash", "dhash"),
             seed: int = 0, log=None) -> tuple[dict | None, str]:
    """imagededup's hashes over the same gallery and query files: ({method: result}, status) or (None, reason)."""
    py, status = peer_python()
    if py is None:
        print(f"bench: {status}", file=log or sys.stderr)
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
    p.add_argument("--max-photos", type=positive_int, default=None, help="use only the first N photos")
    p.add_argument("--max-side", type=positive_int, default=1024, help="photos are capped to this long side (default 1024)")
    p.add_argument("-k", type=positive_int, default=10, help="results per query (top-5 and µAP use them)")
    p.add_argument("--no-peer", action="store_true", help="skip imagededup (used only when installed or configured)")
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
