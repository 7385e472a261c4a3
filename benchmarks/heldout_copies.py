"""Held-out study of copy search on the dev photos (issue 12): choose search rules on dev without the optimism of
a head that saw those photos.

The shipped head (`lookalike train copy-head`) trains on 3x3 tiles of all 30 dev photos, so dev copy figures
flatter it. Here the same recipe (NT-Xent, 1280 -> 1024 -> 256, temperature 0.1, 60 epochs, 8 edited views per
image) is trained twice per seed, each time without the tiles of one half of the dev photos, and each head is
scored only on the edited copies of the photos it never saw (720 queries in all, 1,530 gallery images as in
`lookalike bench copies --photos dev`). Every score includes the low-detail gate of `retrieval/fusion.py`.
No scikit-image photo is used.

Studies (``--study``, several allowed):

- ``heads``: the head recipe: pooling of the backbone's feature map (avg as shipped, GeM p=3, max), the clean
  image as one of the two positives (``clean_p``), 8 more views per image with strong-skewed edits and quarter /
  half turns (``hard``);
- ``views``: query views (mirror, quarter turns; best score per image) for queries whose best two images score
  within a margin (``views="auto"`` of `Engine.search`), by margin and by set of views;
- ``crops``: every gallery image also represented by 5 half-side windows (4 corners and the centre, each embedded
  by the backbone), best score per image minus a penalty ``delta``.

Stages, faiss-bench style: data (backbone features, cached under ``--work``), run (heads per fold and seed),
report (a table, ``--json``). The backbone runs in torch (fp32).

    OMP_NUM_THREADS=2 python benchmarks/heldout_copies.py --study heads views crops --seeds 5 \\
        --json benchmarks/results/heldout-copies-dev.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from lookalike.bench.common import build_gallery, cache_root
from lookalike.bench.copies import copy_queries
from lookalike.data import edits as E
from lookalike.data.photosets import distractors, photo_set
from lookalike.fsutil import atomic_path
from lookalike.indexer.signature import lowfreq_signature
from lookalike.retrieval.fusion import LOWDETAIL_MATCH, LOWDETAIL_WEIGHT, lowdetail_weight
from lookalike.retrieval.searcher import view_image

POOLS = ("avg", "gem", "max")
VIEWS = ("mirror", "rot90", "rot180", "rot270")


class Features:
    """efficientnet_lite0 feature maps pooled three ways (unit vectors, float16), as the shipped head's input."""

    def __init__(self) -> None:
        from lookalike.retrieval.embedders import get_embedder

        emb = get_embedder("efficientnet_lite0").eval()
        self.model, self.tf = emb.model, emb.preprocess.build_transform()

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], desc: str | None = None) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {p: [] for p in POOLS}
        for s in tqdm(range(0, len(images), 32), desc=desc, disable=desc is None, leave=False):
            fm = self.model.forward_features(torch.stack([self.tf(im.convert("RGB")) for im in images[s:s + 32]])).float()
            pooled = {"avg": fm.mean((2, 3)), "gem": fm.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3),
                      "max": fm.amax((2, 3))}
            for p, v in pooled.items():
                out[p].append(F.normalize(v, dim=1).numpy().astype(np.float16))
        return {p: np.concatenate(v) for p, v in out.items()}


def hard_edit(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strong-skewed training view: 1-2 edits at strength 0.5-1, rotations half the time a quarter / half turn."""
    for name in rng.choice(list(E.EDITS), size=int(rng.integers(1, 3)), replace=False):
        if str(name) == "rotate" and rng.random() < 0.5:
            im = im.convert("RGB").rotate(float(rng.choice([90, 180, 270])), expand=True)
        else:
            im = E.EDITS[str(name)](im, float(rng.uniform(0.5, 1.0)), rng)
    if rng.random() < 0.3:
        im = E.gaussian_noise(im, float(rng.uniform(0.02, 0.6)), rng)
    if rng.random() < 0.3:
        im = E.jpeg(im, int(rng.integers(10, 60)))
    return im.convert("RGB")


def _cached(path: Path, make) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path) as z:
            return dict(z)
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays


def build_data(work: Path, n_distractors: int, studies: list[str], log) -> dict:
    """Backbone features of the training views, the dev gallery and the dev copies (cached under ``work``)."""
    from lookalike.training.copy_head import copy_training_items

    feats = Features()
    t0 = time.perf_counter()
    images, _, owners = copy_training_items()

    def views(fn, seed: int, n: int = 8):
        def make():
            rng = np.random.default_rng(seed)
            per = [feats([fn(im, rng) for im in images], f"views {v + 1}/{n}") for v in range(n)]
            return {p: np.stack([x[p] for x in per], 1) for p in POOLS}
        return make

    data = {"owners": np.array(owners)}
    data["clean"] = _cached(work / "train-clean.npz", lambda: feats(images, "training images"))
    data["std"] = _cached(work / "train-views.npz", views(E.random_edit, 0))
    if "heads" in studies:
        data["hard"] = _cached(work / "train-hard.npz", views(hard_edit, 7))
    photos = photo_set("dev")
    gallery = build_gallery(work / f"gallery-dev-{n_distractors}", photos, distractors(n_distractors))
    names = [p.stem for p in gallery.paths]

    def gallery_arrays():
        ims = [Image.open(p).convert("RGB") for p in gallery.paths]
        out = feats(ims, "gallery")
        out["sig"] = np.stack([lowfreq_signature(im) for im in ims])
        if "crops" in studies:
            wins = []
            for im in ims:
                w, h = im.size
                cw, ch = w // 2, h // 2
                wins += [im.crop((x, y, x + cw, y + ch)) for x, y in
                         ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2))]
            out["crops"] = feats(wins, "gallery windows")["avg"].reshape(len(ims), 5, -1)
        return out

    data["gal"] = _cached(work / f"gallery-{n_distractors}{'-crops' if 'crops' in studies else ''}.npz", gallery_arrays)
    src = dict(photos)
    qs = copy_queries(photos, list(E.EDITS), ["mild", "strong"], 0)

    def query_arrays():
        ims = [E.apply_edit(src[q[0]], q[1], q[2], seed=q[3]) for q in qs]
        out = feats(ims, "copies")
        out["sig"] = np.stack([lowfreq_signature(im) for im in ims])
        out["gate"] = np.array([lowdetail_weight(im) for im in ims], np.float32)
        for v in VIEWS:
            out[v] = feats([view_image(im, v) for im in ims], f"copies {v}")["avg"]
        return out

    data["q"] = _cached(work / "copies.npz", query_arrays)
    data["meta"] = np.array([[q[0], q[1], q[2]] for q in qs])
    data["target"] = np.array([names.index(gallery.originals[q[0]].stem) for q in qs])
    print(f"heldout: features ready in {time.perf_counter() - t0:.0f} s", file=log)
    return data


def train_head(views: np.ndarray, clean: np.ndarray, clean_p: float = 0.0, seed: int = 0):
    """The copy-head recipe (`lookalike train copy-head`: 1280 -> 1024 -> 256, temperature 0.1, 60 epochs, batch
    256) on cached features; with probability ``clean_p`` the clean image is the first of the two positives."""
    from lookalike.retrieval.nets import ProjectionHead
    from lookalike.training.trainer import fit_head_on_views

    torch.manual_seed(seed)
    v = torch.from_numpy(views.astype(np.float32))
    head = ProjectionHead(v.shape[2], 1024, 256)
    fit_head_on_views(head, v, torch.arange(len(v)), temperature=0.1, epochs=60, batch_size=256, lr=1e-3,
                      weight_decay=1e-4, seed=seed, clean=torch.from_numpy(clean.astype(np.float32)), clean_p=clean_p)
    return head


@torch.inference_mode()
def _hidden(head, x: np.ndarray) -> np.ndarray:
    shape = x.shape
    z = F.normalize(head.hidden(torch.from_numpy(x.reshape(-1, shape[-1]).astype(np.float32))), dim=1).numpy()
    return z.reshape(*shape[:-1], z.shape[-1])


class Scores:
    """Per fold and seed: held-out queries' gallery scores (gated), of their views, of the gallery windows."""

    def __init__(self, data: dict, pool: str = "avg", sets: tuple[str, ...] = ("std",), clean_p: float = 0.0,
                 seed: int = 0, extra: bool = False) -> None:
        meta, owners = data["meta"], data["owners"]
        dev = sorted(set(meta[:, 0]))
        low = data["q"]["sig"] @ data["gal"]["sig"].T
        self.fused = (data["q"]["gate"] > 0) & (low.max(1) >= LOWDETAIL_MATCH)
        nq, ng = len(meta), len(data["gal"]["avg"])
        self.base = np.zeros((nq, ng), np.float32)
        self.views = {v: np.zeros((nq, ng), np.float32) for v in VIEWS} if extra else {}
        self.crops = np.zeros((nq, ng), np.float32) if extra and "crops" in data["gal"] else None
        views = np.concatenate([data[s][pool] for s in sets], axis=1)
        for held in (dev[0::2], dev[1::2]):
            keep = ~np.isin(owners, held)
            head = train_head(views[keep], data["clean"][pool][keep], clean_p, seed)
            g = _hidden(head, data["gal"][pool])
            sel = np.isin(meta[:, 0], held)
            q = _hidden(head, data["q"][pool][sel])
            s = q @ g.T
            f = self.fused[sel]
            s[f] = (s[f] + LOWDETAIL_WEIGHT * low[sel][f]) / (1 + LOWDETAIL_WEIGHT)
            self.base[sel] = s
            for v in self.views:
                self.views[v][sel] = _hidden(head, data["q"][v][sel]) @ g.T
            if self.crops is not None:
                w = _hidden(head, data["gal"]["crops"])
                self.crops[sel] = np.einsum("qd,nmd->qnm", q, w).max(2)
        top = np.sort(self.base, 1)
        self.margin = top[:, -1] - top[:, -2]
        self.target = data["target"]

    def misses(self, scores: np.ndarray | None = None) -> np.ndarray:
        return (self.base if scores is None else scores).argmax(1) != self.target

    def with_views(self, names: tuple[str, ...], margin: float) -> tuple[np.ndarray, float]:
        """Misses when the views run for unfused queries whose best two are within ``margin``; trigger rate."""
        best = self.base.copy()
        for v in names:
            best = np.maximum(best, self.views[v])
        trig = (self.margin < margin) & ~self.fused
        return np.where(trig, self.misses(best), self.misses()), float(trig.mean())

    def with_crops(self, delta: float, margin: float) -> np.ndarray:
        trig = (self.margin < margin) & ~self.fused
        return np.where(trig, self.misses(np.maximum(self.base, self.crops - delta)), self.misses())


HEAD_CONFIGS = [("avg (shipped recipe)", "avg", ("std",), 0.0), ("gem", "gem", ("std",), 0.0),
                ("max", "max", ("std",), 0.0), ("avg clean_p 0.5", "avg", ("std",), 0.5),
                ("gem clean_p 0.5", "gem", ("std",), 0.5), ("avg +hard", "avg", ("std", "hard"), 0.0),
                ("gem +hard", "gem", ("std", "hard"), 0.0), ("gem +hard clean_p 0.5", "gem", ("std", "hard"), 0.5)]
MARGINS = (0.02, 0.03, 0.05, 0.075, 0.1, 9.0)
VIEW_SETS = {"mirror+rot90+rot180+rot270": VIEWS, "rot90+rot180+rot270": VIEWS[1:], "mirror": ("mirror",),
             "rot180": ("rot180",), "mirror+rot180": ("mirror", "rot180")}


def run(data: dict, studies: list[str], seeds: int, log) -> dict:
    kinds = data["meta"][:, 1]
    rows: dict[str, list] = {}

    def add(name: str, miss: np.ndarray, trig: float | None = None) -> None:
        r = rows.setdefault(name, {"misses": [], "crop_top1": [], "trigger": []})
        r["misses"].append(int(miss.sum()))
        r["crop_top1"].append(float(1 - miss[kinds == "crop"].mean()))
        if trig is not None:
            r["trigger"].append(trig)

    for seed in range(seeds):
        t0 = time.perf_counter()
        if "heads" in studies:
            for name, pool, sets, cp in HEAD_CONFIGS:
                add(f"heads: {name}", Scores(data, pool, sets, cp, seed).misses())
        if "views" in studies or "crops" in studies:
            sc = Scores(data, seed=seed, extra=True)
            add("plain (shipped recipe)", sc.misses())
            for vname, names in VIEW_SETS.items() if "views" in studies else ():
                for m in MARGINS:
                    add(f"views {vname}, margin {'always' if m > 1 else m}", *sc.with_views(names, m))
            for delta in (0.0, 0.05, 0.1, 0.15) if sc.crops is not None else ():
                for m in (0.03, 0.05, 9.0):
                    add(f"crops delta {delta}, margin {'always' if m > 1 else m}", sc.with_crops(delta, m))
        print(f"heldout: seed {seed} in {time.perf_counter() - t0:.0f} s", file=log)
    for r in rows.values():
        r["mean_misses"] = float(np.mean(r["misses"]))
        r["top1"] = round(1 - r["mean_misses"] / len(kinds), 4)
        r["crop_top1"] = round(float(np.mean(r["crop_top1"])), 4)
        r["trigger"] = round(float(np.mean(r["trigger"])), 4) if r["trigger"] else None
    return {"bench": "heldout-copies", "photo_set": "dev", "n_queries": len(kinds), "n_gallery": len(data["gal"]["avg"]),
            "seeds": seeds, "folds": 2, "studies": studies, "rows": rows}


def format_report(result: dict) -> str:
    lines = [f"held-out dev copies: {result['n_queries']} queries, {result['seeds']} seeds x 2 folds; "
             "misses per seed, mean, top-1, crop top-1, share of queries that ran the views",
             f"{'method':<52} {'misses per seed':<24} {'mean':>6} {'top-1':>7} {'crop':>6} {'runs':>6}"]
    for name, r in result["rows"].items():
        trig = "" if r["trigger"] is None else f"{r['trigger']:.3f}"
        lines.append(f"{name:<52} {str(r['misses']):<24} {r['mean_misses']:6.1f} {r['top1']:7.4f} "
                     f"{r['crop_top1']:6.3f} {trig:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", nargs="+", choices=("heads", "views", "crops"), default=["views"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--distractors", type=int, default=1500)
    p.add_argument("--work", type=Path, default=None, help="feature cache (default ~/.cache/lookalike-bench/heldout)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.seeds < 1 or a.distractors < 0:
        print("heldout_copies: --seeds must be >= 1 and --distractors >= 0", file=sys.stderr)
        return 2
    if not photo_set("dev"):
        print("heldout_copies: no dev photos (install mate-backgrounds and ukui-wallpapers)", file=sys.stderr)
        return 2
    work = a.work or cache_root() / "heldout"
    data = build_data(work, a.distractors, a.study, sys.stderr)
    result = run(data, a.study, a.seeds, sys.stderr)
    result["command"] = "python benchmarks/heldout_copies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(format_report(result))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
