"""Indexing throughput end to end (scan, hash, decode, embed, commit, save) vs the bare model forward.

    python benchmarks/indexing.py --n 512 --size 224

Both figures come from the same run, same embedder, same image size, same batch size; the two are
measured in turn, ``--repeats`` times, and the medians are compared. The photos are 800x600 JPEGs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_photos(folder: Path, n: int, seed: int = 0) -> None:
    """n distinct JPEG photos (~800x600 crops of the scikit-image photos, randomly flipped/rotated)."""
    from PIL import Image

    from lookalike.data.photos import load_photo

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "coins", "camera"]
    photos = [load_photo(p).convert("RGB").resize((1024, 768)) for p in names]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = photos[i % len(photos)]
        x, y = int(rng.integers(0, 224)), int(rng.integers(0, 168))
        crop = im.crop((x, y, x + 800, y + 600))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(folder / f"img{i:05d}.jpg", quality=88)


def bare_forward(model_name: str, n: int, batch: int) -> float:
    """Images per second of the model alone on ready tensors."""
    from lookalike.retrieval.embedders import get_embedder

    emb = get_embedder(model_name)
    x = torch.randn(batch, 3, emb.preprocess.input_size, emb.preprocess.input_size)
    emb.embed_tensor(x[:4])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < n:
        emb.embed_tensor(x)
        done += batch
    return done / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=0, help="input size (default: the model's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved bare/end-to-end runs (medians reported)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from lookalike.retrieval import embedders
    from lookalike.retrieval.engine import Engine

    model = f"{args.model}@{args.size}" if args.size else args.model

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    fwd_runs, e2e_runs = [], []
    try:
        make_photos(tmp / "imgs", args.n)
        for r in range(args.repeats):  # interleaved, so drift in CPU speed hits both figures alike
            fwd_runs.append(bare_forward(model, args.n, args.batch_size))
            engine = Engine.open(tmp / f"idx{r}", model=model)
            t0 = time.perf_counter()
            rep = engine.add([tmp / "imgs"], batch_size=args.batch_size, workers=args.workers, progress=False)
            e2e_runs.append(rep.indexed / (time.perf_counter() - t0))
            if r == 0:
                t1 = time.perf_counter()
                rep2 = engine.add([tmp / "imgs"], progress=False)
                rerun_s = time.perf_counter() - t1
            engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fwd, e2e = float(np.median(fwd_runs)), float(np.median(e2e_runs))
    out = {"model": model, "n": args.n, "input_size": embedders.get_embedder(model).preprocess.input_size,
           "batch_size": args.batch_size, "repeats": args.repeats, "bare_forward_img_s": round(fwd, 2),
           "end_to_end_img_s": round(e2e, 2), "ratio": round(e2e / fwd, 3),
           "ratio_per_run": [round(e / f, 3) for e, f in zip(e2e_runs, fwd_runs)],
           "rerun_unchanged_s": round(rerun_s, 2), "rerun_unchanged_files": rep2.unchanged,
           "torch_threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(out))
    else:
        print("| model | input | images x runs | bare forward img/s | end-to-end img/s | ratio (per run) | re-run, nothing changed |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {model} | {out['input_size']} px | {args.n} x {args.repeats} | {out['bare_forward_img_s']} | "
              f"{out['end_to_end_img_s']} | {out['ratio']} ({', '.join(map(str, out['ratio_per_run']))}) | "
              f"{out['rerun_unchanged_s']} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
