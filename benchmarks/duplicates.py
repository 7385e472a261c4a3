"""Near-duplicate benchmark: ``lookalike duplicates`` against imagededup's ``find_duplicates``, and a 100k scale run.

Accuracy: a flat folder of known groups (a real photo, then four mild edits of it: resized to 50 %, JPEG
quality 50, the central 90 % crop, colour +30 % and brightness +10 %) among CIFAR-10-sample images upscaled
to 256 px as distractors. Pair precision and recall: the true pairs are the pairs within a group; predicted
pairs are the pairs within a found group (lookalike) or the listed duplicate pairs (imagededup).

* ``dev`` photos (the only ones any setting is chosen on): Debian ``mate-backgrounds`` / ``ukui-wallpapers``
  wallpapers, scikit-learn's china/flower, matplotlib's grace_hopper; distractors CIFAR-10-sample train 0-399.
* ``eval`` photos (figures only, never for choosing): scikit-image's bundled photos; distractors train 400-799.

lookalike's threshold and imagededup's Hamming distance are each chosen on dev (best F1); both are then
reported on eval at that setting, and imagededup also at its default distance (10). imagededup runs from its
own virtual environment (``benchmarks.peers``: a pinned version, created on first use, layered on this one's packages) in
a subprocess; its CNN method needs torchvision weights fetched at run time, so it is left out offline.

Scale: ``--scale N`` stores N synthetic 1280-d vectors (clustered, with planted near-copies) in a real index
folder, then times ``find_duplicates`` in a fresh process (peak RSS) and checks planted-pair recall.

    .venv/bin/python -m benchmarks.duplicates                 # dev + eval, lookalike and imagededup
    .venv/bin/python -m benchmarks.duplicates --scale 100000  # the scale run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.peers import imagededup_python
from lookalike.settings import bench_cache_root

CACHE = bench_cache_root()
EDITS = ["orig", "resize50", "jpeg50", "crop90", "colour"]
SOURCE_SIDE = 1024  # sources are brought down to this longest side first (the "original" of each group)
DISTRACTOR_PX = 256
THRESHOLDS = [round(t, 2) for t in np.arange(0.70, 0.995, 0.01)]
PEER_DISTANCES = list(range(0, 21))
PEER_METHODS = ["PHash", "DHash"]

# Debian wallpaper photos and artwork (not the transparent ones, and one of each set of variants of a design)
DEV_FILES = [
    *(f"/usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
    "/usr/share/backgrounds/mate/abstract/Elephants.jpg",
    "/usr/share/backgrounds/mate/desktop/Float-into-MATE.png",
    "/usr/share/backgrounds/mate/desktop/GreenTraditional.jpg",
    "/usr/share/backgrounds/mate/desktop/Stripes.png",
    "/usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Cold-no-logo.png",
    *(f"/usr/share/backgrounds/{n}" for n in (
        "2004default.jpg", "calla.png", "city.png", "desert.png", "firstgeneration.jpg", "fluent-color.png",
        "focal-ubuntukylin.png", "goldfish.png", "rhythm.jpg", "rollpaper.png", "string.jpg", "the-mouse.jpg")),
]


def _rgb(im: Image.Image) -> Image.Image:
    """RGB, transparent parts on white."""
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, "white")
        bg.paste(im, mask=im.split()[3])
        return bg
    return im.convert("RGB")


def dev_sources() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of the DEV photos that are installed (apt-get install mate-backgrounds ukui-wallpapers)."""
    from sklearn.datasets import load_sample_image
    import matplotlib.cbook

    out = []
    for f in DEV_FILES:
        if os.path.isfile(f):
            im = Image.open(f)
            im.draft("RGB", (SOURCE_SIDE, SOURCE_SIDE))
            out.append((Path(f).stem, _rgb(im)))
    for n in ("china.jpg", "flower.jpg"):
        out.append((Path(n).stem, Image.fromarray(load_sample_image(n))))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        out.append(("grace_hopper", _rgb(Image.open(fh))))
    return out


def eval_sources() -> list[tuple[str, Image.Image]]:
    """scikit-image's bundled photos: evaluation only."""
    from lookalike.data.photos import available_photos, load_photo

    return [(n, _rgb(load_photo(n))) for n in available_photos()]


def edit(im: Image.Image, kind: str) -> tuple[Image.Image, dict]:
    """One mild edit of ``im`` and the save options for it."""
    w, h = im.size
    if kind == "resize50":
        return im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), {}
    if kind == "jpeg50":
        return im, {"quality": 50}
    if kind == "crop90":
        dx, dy = round(w * 0.05), round(h * 0.05)
        return im.crop((dx, dy, w - dx, h - dy)), {}
    if kind == "colour":
        return ImageEnhance.Brightness(ImageEnhance.Color(im).enhance(1.3)).enhance(1.1), {}
    return im, {}


def build_folder(which: str, root: Path) -> dict[str, int]:
    """Write the benchmark folder for ``which`` (dev/eval); returns file name -> group (-1 for distractors)."""
    from lookalike.data.samples import load_sample

    labels_path = root / "groups.json"
    if labels_path.is_file():
        return json.loads(labels_path.read_text())
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    sources = dev_sources() if which == "dev" else eval_sources()
    truth: dict[str, int] = {}
    for g, (name, im) in enumerate(sources):
        im = im.copy()
        im.thumbnail((SOURCE_SIDE, SOURCE_SIDE), Image.Resampling.LANCZOS)
        for kind in EDITS:
            out, opts = edit(im, kind)
            fname = f"g{g:03d}-{name}-{kind}.{'jpg' if 'quality' in opts else 'png'}"
            out.save(folder / fname, **opts)
            truth[fname] = g
    cifar = load_sample("cifar10", "train").images
    for i in range(0, 400) if which == "dev" else range(400, 800):
        fname = f"d{i:04d}.png"
        Image.fromarray(cifar[i]).resize((DISTRACTOR_PX, DISTRACTOR_PX), Image.Resampling.BICUBIC).save(folder / fname)
        truth[fname] = -1
    labels_path.write_text(json.dumps(truth))
    return truth


def true_pairs(truth: dict[str, int]) -> set[tuple[str, str]]:
    by: dict[int, list[str]] = {}
    for f, g in truth.items():
        if g >= 0:
            by.setdefault(g, []).append(f)
    return {tuple(sorted(p)) for fs in by.values() for p in combinations(fs, 2)}


def scores(pred: set, truth: set) -> dict:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "pairs": len(pred)}


def lookalike_sweep(root: Path, model: str) -> tuple[dict[float, set], float]:
    """Predicted pairs at every threshold (index built once with the real engine), and the indexing seconds."""
    from lookalike.retrieval.duplicates import duplicate_components
    from lookalike.retrieval.engine import Engine

    t0 = time.perf_counter()
    with Engine.open(root / f"index-{model}", model=model) as eng:
        eng.add([root / "images"], progress=False, warn=None)
        ids, vecs = eng.vectors()
        meta = eng.store.lookup(ids.tolist())
    index_s = time.perf_counter() - t0
    names = [[os.path.basename(p) for p in meta[int(i)][3]] for i in ids]  # byte-identical files share an image
    out = {}
    for t in THRESHOLDS:
        labels, _ = duplicate_components(vecs, t)
        by: dict[int, list[str]] = {}
        for ns, lab in zip(names, labels.tolist()):
            by.setdefault(lab, []).extend(ns)
        out[t] = {tuple(sorted(p)) for fs in by.values() if len(fs) > 1 for p in combinations(fs, 2)}
    return out, index_s


PEER_SCRIPT = r"""
import json, sys, time
from imagededup.methods import PHash, DHash
folder, methods, dists = sys.argv[1], sys.argv[2].split(","), [int(d) for d in sys.argv[3].split(",")]
out = {}
for m in methods:
    h = {"PHash": PHash, "DHash": DHash}[m](verbose=False)
    t0 = time.perf_counter()
    enc = h.encode_images(image_dir=folder, num_enc_workers=0)
    out[m] = {"encode_s": time.perf_counter() - t0, "pairs": {}}
    for d in dists:
        dup = h.find_duplicates(encoding_map=enc, max_distance_threshold=d, num_dist_workers=0)
        out[m]["pairs"][d] = sorted({tuple(sorted((a, b))) for a, bs in dup.items() for b in bs})
print(json.dumps(out))
"""


def peer_sweep(root: Path) -> dict:
    """imagededup's pairs per method and Hamming distance (cached per folder)."""
    cache = root / "imagededup.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    py = imagededup_python()
    res = subprocess.run([py, "-c", PEER_SCRIPT, str(root / "images"), ",".join(PEER_METHODS),
                          ",".join(map(str, PEER_DISTANCES))], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    data = json.loads(res.stdout.strip().splitlines()[-1])
    cache.write_text(json.dumps(data))
    return data


def _best(table: dict, truth: set) -> tuple:
    """The setting with the best F1 (ties: the middle one of the tied run)."""
    f1 = {k: scores(v, truth)["f1"] for k, v in table.items()}
    top = max(f1.values())
    tied = [k for k in table if f1[k] == top]
    return tied[len(tied) // 2]


def accuracy(args) -> dict:
    work = Path(args.work)
    sets = {s: build_folder(s, work / s) for s in ("dev", "eval")}
    truth = {s: true_pairs(t) for s, t in sets.items()}
    rows = {}
    ours = {s: lookalike_sweep(work / s, args.model) for s in sets}
    t_ours = _best(ours["dev"][0], truth["dev"])
    rows[f"lookalike {args.model}, threshold {t_ours} (chosen on dev)"] = {
        s: scores(ours[s][0][t_ours], truth[s]) for s in sets}
    curve = {t: {s: scores(ours[s][0][t], truth[s]) for s in sets} for t in THRESHOLDS}
    if not args.no_peer:
        peer = {s: peer_sweep(work / s) for s in sets}
        for m in PEER_METHODS:
            tab = {s: {int(d): {tuple(p) for p in ps} for d, ps in peer[s][m]["pairs"].items()} for s in sets}
            d_best = _best(tab["dev"], truth["dev"])
            rows[f"imagededup {m}, distance 10 (default)"] = {s: scores(tab[s][10], truth[s]) for s in sets}
            rows[f"imagededup {m}, distance {d_best} (chosen on dev)"] = {s: scores(tab[s][d_best], truth[s]) for s in sets}
    return {"images": {s: len(t) for s, t in sets.items()}, "true_pairs": {s: len(t) for s, t in truth.items()},
            "groups": {s: len({g for g in t.values() if g >= 0}) for s, t in sets.items()},
            "threshold": t_ours, "rows": rows, "curve": curve, "index_seconds": {s: round(ours[s][1], 1) for s in sets}}


# ------------------------------------------------------------------------------------------------ mixed
MIXED_KINDS = ("resize", "jpeg", "crop", "colour", "text", "emoji", "pad", "grayscale")


def mixed_copy(im: Image.Image, kind: str, seed: int) -> Image.Image:
    """A duplicate-style copy (what people keep twice): mild AugLy edits with seeded parameters."""
    from lookalike.data.augly_edits import shim_augly

    F = shim_augly()
    rng = np.random.default_rng(seed)
    if kind == "resize":
        f = float(rng.uniform(0.3, 0.7))
        return im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.Resampling.LANCZOS)
    if kind == "jpeg":
        return F.encoding_quality(im, quality=int(rng.integers(15, 50)))
    if kind == "crop":
        f = float(rng.uniform(0.8, 0.95))
        x, y = float(rng.uniform(0, 1 - f)), float(rng.uniform(0, 1 - f))
        return F.crop(im, x1=x, y1=y, x2=x + f, y2=y + f)
    if kind == "colour":
        return F.color_jitter(im, brightness_factor=float(rng.uniform(0.8, 1.25)),
                              contrast_factor=float(rng.uniform(0.8, 1.25)), saturation_factor=float(rng.uniform(0.6, 1.5)))
    if kind in ("text", "emoji", "pad", "grayscale"):
        from lookalike.data.augly_edits import augly_edit

        if kind == "pad":
            return F.pad(im, w_factor=float(rng.uniform(0.02, 0.1)), h_factor=float(rng.uniform(0.02, 0.1)),
                         color=tuple(int(c) for c in rng.integers(0, 256, 3)))
        return augly_edit(im, {"text": "text", "emoji": "emoji", "grayscale": "grayscale"}[kind], seed=seed)
    raise ValueError(kind)


def build_mixed(which: str, root: Path) -> dict[str, int]:
    """The issue-22 folder: photos with 3 copies each, other photos alone, 300 MNIST and 300 CIFAR-10 images;
    file name -> group (-1: no copy in the folder). dev: GCompris/Jigzo/Debian dev photos (one photo fold with
    copies, 40 of the other alone); eval: scikit-image's photos with copies, Debian desktop graphics alone."""
    from lookalike.bench.calibrated import photo_fold
    from lookalike.data.photosets import _DISTRACT_DEBIAN, _debian, eval_photos, wide_dev_photos
    from lookalike.data.samples import load_sample

    labels_path = root / "groups.json"
    if labels_path.is_file():
        return json.loads(labels_path.read_text())
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    if which == "dev":
        photos = wide_dev_photos(SOURCE_SIDE)
        with_copies = [(n, im) for n, im in photos if photo_fold(n) == 0]
        alone = [(n, im) for n, im in photos if photo_fold(n) == 1][:40]
    else:
        with_copies, alone = eval_photos(SOURCE_SIDE), _debian(_DISTRACT_DEBIAN, SOURCE_SIDE)
    truth: dict[str, int] = {}
    for g, (name, im) in enumerate(with_copies):
        rng = np.random.default_rng(g)
        im.convert("RGB").save(folder / f"g{g:03d}-{name}.jpg", quality=92)
        truth[f"g{g:03d}-{name}.jpg"] = g
        for j, kind in enumerate(rng.choice(MIXED_KINDS, 3, replace=False)):
            fname = f"g{g:03d}-{name}-{kind}.jpg"
            mixed_copy(im.convert("RGB"), str(kind), seed=g * 10 + j).convert("RGB").save(folder / fname, quality=92)
            truth[fname] = g
    for name, im in alone:
        im.convert("RGB").save(folder / f"alone-{name}.jpg", quality=92)
        truth[f"alone-{name}.jpg"] = -1
    digits = load_sample("mnist", "test").images[:300]
    for i, a in enumerate(digits):
        Image.fromarray(a).convert("RGB").resize((112, 112), Image.BICUBIC).save(folder / f"mnist-{i:04d}.png")
        truth[f"mnist-{i:04d}.png"] = -1
    cifar = load_sample("cifar10", "train").images[:300]
    for i, a in enumerate(cifar):
        Image.fromarray(a).resize((128, 128), Image.BICUBIC).save(folder / f"cifar-{i:04d}.png")
        truth[f"cifar-{i:04d}.png"] = -1
    labels_path.write_text(json.dumps(truth))
    return truth


def _pairs_of(groups: list[list[str]]) -> set:
    return {tuple(sorted(p)) for fs in groups if len(fs) > 1 for p in combinations(fs, 2)}


def _mixed_groups(groups: list[list[str]], truth: dict[str, int]) -> int:
    """Groups that hold two different pictures (two true groups, or a picture and an unrelated image)."""
    return sum(1 for fs in groups if len({truth[f] if truth[f] >= 0 else f"x{f}" for f in fs}) > 1)


def mixed(args) -> dict:
    """Duplicates on the mixed folders: the calibrated copy score (stars), the old cosine components, imagededup."""
    from lookalike.retrieval.duplicates import DEFAULT_THRESHOLD, duplicate_components, find_duplicates
    from lookalike.retrieval.engine import Engine

    work = Path(args.work) / "mixed"
    out: dict = {"model": args.model, "sets": {}}
    for which in ("dev", "eval"):
        root = work / which
        truth = build_mixed(which, root)
        tp = true_pairs(truth)
        rows = {}
        with Engine.open(root / f"index-{args.model.replace(':', '_').replace('/', '_')}", model=args.model) as eng:
            eng.add([root / "images"], progress=False, warn=None)
            t0 = time.perf_counter()
            rep = find_duplicates(eng)
            secs = time.perf_counter() - t0
            groups = [[os.path.basename(f.path) for f in g.files] for g in rep.groups]
            rows[f"lookalike {rep.score} {rep.threshold:.3f} (stars)"] = {
                **scores(_pairs_of(groups), tp), "mixed_groups": _mixed_groups(groups, truth),
                "largest_group": max(map(len, groups), default=0), "seconds": round(secs, 2)}
            ids, vecs = eng.vectors()
            meta = eng.store.lookup(ids.tolist())
            labels, _ = duplicate_components(vecs, DEFAULT_THRESHOLD)
            by: dict[int, list[str]] = {}
            for i, lab in zip(ids.tolist(), labels.tolist()):
                by.setdefault(lab, []).extend(os.path.basename(p) for p in meta[int(i)].paths)
            old = [fs for fs in by.values() if len(fs) > 1]
            rows[f"lookalike cosine {DEFAULT_THRESHOLD} (connected components, before)"] = {
                **scores(_pairs_of(old), tp), "mixed_groups": _mixed_groups(old, truth),
                "largest_group": max(map(len, old), default=0)}
        if not args.no_peer:
            peer = peer_sweep(root)
            for m in PEER_METHODS:
                pairs = {tuple(p) for p in peer[m]["pairs"]["10"]}
                rows[f"imagededup {m}, distance 10 (default)"] = scores(pairs, tp)
        out["sets"][which] = {"images": len(truth), "groups": len({g for g in truth.values() if g >= 0}),
                              "true_pairs": len(tp), "rows": rows}
    return out


# ------------------------------------------------------------------------------------------------ scale
def scale_store(db: Path, n: int, dim: int, seed: int = 0) -> Path:
    """An index folder holding n synthetic unit vectors: clustered, 10 % of them near-copies (cos ~0.95) of others."""
    from lookalike.indexer.store import NewImage
    from lookalike.retrieval.engine import Engine

    truth_path = db / "planted.npy"
    if truth_path.is_file():
        return db
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    planted = []
    with Engine.open(db, model="efficientnet_lite0", load_index=False) as eng:
        assert eng.dim == dim, f"efficientnet_lite0 gives {eng.dim}-d vectors"
        for s in range(0, n, 5000):
            m = min(5000, n - s)
            x = centres[rng.integers(0, 1000, m)] + rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
            first = m - m // 10  # the last tenth of each chunk: near-copies of earlier rows of the chunk
            src = rng.integers(0, first, m - first)
            x[first:] = x[src] + rng.standard_normal((m - first, dim)).astype(np.float32) * (0.3 / np.sqrt(dim))
            planted += [(s + int(a), s + first + k) for k, a in enumerate(src)]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            eng.store.commit_chunk([NewImage(sha256=f"{s + k:064x}", width=640, height=480, vector=x[k],
                                             files=[(f"/synthetic/{s + k:07d}.jpg", 100_000, 10**18 + s + k)])
                                    for k in range(m)], [], [])
    np.save(truth_path, np.asarray(planted, np.int64))
    return db


SCALE_CHILD = r"""
import json, resource, sys, time
import numpy as np
from lookalike.retrieval.engine import Engine
from lookalike.retrieval.duplicates import find_duplicates
db, nlist = sys.argv[1], (int(sys.argv[2]) if sys.argv[2] != "auto" else None)
eng = Engine.open(db, create=False, load_index=False)
t0 = time.perf_counter()
rep = find_duplicates(eng, nlist=nlist)
secs = time.perf_counter() - t0
planted = np.load(db + "/planted.npy")
group = {}
for g in rep.groups:
    for f in g.files:
        group[int(f.path.rsplit("/", 1)[1][:7])] = g.id
found = sum(1 for a, b in planted.tolist() if a in group and group.get(a) == group.get(b))
print(json.dumps({"seconds": round(secs, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "method": rep.method, "groups": len(rep.groups), "files": rep.files,
                  "planted_pairs": len(planted), "planted_pair_recall": round(found / max(1, len(planted)), 4)}))
"""


def scale(args) -> dict:
    db = scale_store(Path(args.work) / f"scale-{args.scale}", args.scale, 1280)
    out = {"images": args.scale, "dim": 1280, "db_mb": round(os.path.getsize(db / "metadata.db") / 1e6)}
    for mode in ["auto"] + (["1"] if args.exact else []):
        res = subprocess.run([sys.executable, "-c", SCALE_CHILD, str(db), mode], capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr.strip().splitlines()[-1])
        out["exact" if mode == "1" else "default"] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=str(CACHE / "duplicates"), help="folders, indexes and peer results (cached)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--no-peer", action="store_true", help="leave imagededup out")
    ap.add_argument("--scale", type=int, default=0, help="run only the scale benchmark with this many vectors")
    ap.add_argument("--exact", action="store_true", help="with --scale: also time the exact all-pairs method")
    ap.add_argument("--mixed", action="store_true",
                    help="the mixed folders (photos with 3 copies, other photos, 300 MNIST, 300 CIFAR-10): "
                         "the calibrated copy score against the cosine components and imagededup")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.mixed:
        res = mixed(args)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=2))
        for which, r in res["sets"].items():
            print(f"{which}: {r['images']} images, {r['groups']} pictures with copies, {r['true_pairs']} true pairs")
            print("| method | precision | recall | groups mixing pictures | largest group |\n|---|---|---|---|---|")
            for name, x in r["rows"].items():
                print(f"| {name} | {x['precision']:.3f} | {x['recall']:.3f} | {x.get('mixed_groups', '-')} | "
                      f"{x.get('largest_group', '-')} |")
        return 0
    res = scale(args) if args.scale else accuracy(args)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    if args.scale:
        print(json.dumps(res, indent=2))
        return 0
    print(f"dev: {res['images']['dev']} images, {res['groups']['dev']} groups, {res['true_pairs']['dev']} true pairs; "
          f"eval: {res['images']['eval']} images, {res['groups']['eval']} groups, {res['true_pairs']['eval']} true pairs")
    print("| method | dev precision | dev recall | eval precision | eval recall |\n|---|---|---|---|---|")
    for name, r in res["rows"].items():
        print(f"| {name} | {r['dev']['precision']:.3f} | {r['dev']['recall']:.3f} | "
              f"{r['eval']['precision']:.3f} | {r['eval']['recall']:.3f} |")
    print("\nthreshold sweep (dev P/R, eval P/R):")
    for t, r in res["curve"].items():
        print(f"  {t:.2f}  {r['dev']['precision']:.3f} {r['dev']['recall']:.3f}   {r['eval']['precision']:.3f} {r['eval']['recall']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
