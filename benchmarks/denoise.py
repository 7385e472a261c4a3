"""Noisy-query benchmark: PSNR/SSIM, P@1/P@10, hallucination rate, sigma-estimator error and latency for
noisy, classical (NL-means), DDPM and DDIM queries over sigma in {0.1 .. 1.0}; writes JSON, plots and a markdown table.

    python -m benchmarks.denoise --dataset mnist --embedder siamese-mnist --queries 300
    python -m benchmarks.denoise --dataset cifar10 --embedder siamese-cifar10 --queries 164
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lookalike.training.ddpm.bench import METHODS, Setup, clean_metrics, default_embedder, evaluate_sigma
from lookalike.retrieval.denoise.noise import from_unit

SIGMAS = (0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
ROOT = Path(__file__).resolve().parent.parent


def _plot(rows: list[dict], clean: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    sig = [r["sigma"] for r in rows]
    for m in METHODS:
        ax[0].plot(sig, [r[f"p_at_1_{m}"] for r in rows], marker="o", label=m)
        ax[1].plot(sig, [r[f"psnr_{m}"] for r in rows], marker="o", label=m)
    ax[0].axhline(clean["p_at_1_clean"], color="k", ls="--", lw=1, label="clean")
    ax[0].set(xlabel="sigma ([-1,1] scale)", ylabel="precision@1", title=title)
    ax[1].set(xlabel="sigma ([-1,1] scale)", ylabel="PSNR (dB)", title="image quality")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _grid(s: Setup, rows: list[dict], path: Path, n_ok: int = 6, n_fail: int = 4) -> None:
    """Rows of noisy / DDIM / classical / clean at sigma 0.5 and 1.0; right columns are DDIM failures (wrong 10-NN class)."""
    from PIL import Image

    from lookalike.training.ddpm.bench import knn_class

    tiles = []
    for r in rows:
        if r["sigma"] not in (0.5, 1.0):
            continue
        o = r["_outputs"]
        cls = knn_class(s.embed(o["ddim"]), s.g_emb, s.g_labels)
        ok = np.flatnonzero(cls == s.labels)[:n_ok]
        bad = np.flatnonzero(cls != s.labels)[:n_fail]
        idx = np.concatenate([ok, bad]).astype(int)
        for m in ("noisy", "ddim", "classical"):
            tiles.append(from_unit(o[m][idx]))
        tiles.append(from_unit(s.x[idx]))
    if not tiles:
        return
    rowsimg = [np.concatenate(list(t if t.ndim == 4 else t[..., None].repeat(3, -1)), axis=1) for t in tiles]
    w = max(r.shape[1] for r in rowsimg)
    rowsimg = [np.pad(r, ((1, 1), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rowsimg]
    img = Image.fromarray(np.concatenate(rowsimg).astype(np.uint8))
    img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)
    img.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"))
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cmd = "python -m benchmarks.denoise " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(cmd, flush=True)
    emb = args.embedder or default_embedder(args.dataset)
    t0 = time.time()
    s = Setup(args.dataset, emb, args.queries, args.seed)
    clean = clean_metrics(s)
    rows = []
    for sigma in args.sigmas:
        r = evaluate_sigma(s, sigma, tuple(args.methods), args.steps)
        rows.append(r)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if not k.startswith("_")}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.dataset}-{emb}"
    res = {"command": cmd, "dataset": args.dataset, "embedder": emb, "steps": args.steps, "threads": args.threads,
           "model": s.model_name, "clean": clean, "wall_time_s": round(time.time() - t0, 1),
           "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}
    (out / f"denoise-{tag}.json").write_text(json.dumps(res, indent=2))
    if not args.no_figures and set(METHODS) <= set(args.methods):
        _plot(rows, clean, ROOT / "docs" / f"denoise-p1-{tag}.png", f"{args.dataset}-sample, {emb}")
        _grid(s, rows, ROOT / "docs" / f"denoise-grid-{args.dataset}.png")
    print(json.dumps({"clean": clean, "wall_time_s": res["wall_time_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
