"""Photo denoiser (``ddpm-photo``) on real photos: noise-level estimates, and denoising quality vs speed.

``sigma``: ``estimate_sigma`` on clean photos and on Gaussian noise sigma 0.1..1.0 (0..1 scale, clipped, 8-bit;
= 0.2..2.0 on the [-1, 1] scale the code uses): mean estimate and median relative error, per estimator.
``denoise``: per level and setting (working side: the image box-reduced by an integer factor to at most that long
side, ``full`` = no reduction; DDIM steps from t*(sigma)), PSNR of the result against the clean photo at the
retrieval scale (both resized to 224 px on the long side), the cosine between the efficientnet_lite0 embeddings of
the result and of the clean photo (what search compares), and ms per megapixel (busy machine).

    OMP_NUM_THREADS=1 python -m benchmarks.photo_denoise sigma --photos dev
    OMP_NUM_THREADS=1 python -m benchmarks.photo_denoise denoise --photos dev --max-photos 8 --settings full:1,256:1,256:2
    OMP_NUM_THREADS=1 python -m benchmarks.photo_denoise timing --photos dev
    OMP_NUM_THREADS=1 python -m benchmarks.photo_denoise grid --photos dev --max-photos 4 --settings 256:1,full:1
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from lookalike.data.edits import gaussian_noise
from lookalike.data.photosets import photo_set

LEVELS = (0.1, 0.25, 0.5, 0.75, 1.0)


def _sigma(photos: list[tuple[str, Image.Image]], estimators: list[str]) -> dict:
    from lookalike.retrieval.denoise import estimate_sigma

    levels = (0.0,) + LEVELS
    est = {e: {lvl: [] for lvl in levels} for e in estimators}
    for pi, (_, im) in enumerate(photos):
        for li, lvl in enumerate(levels):
            y = im if lvl == 0 else gaussian_noise(im, lvl, np.random.default_rng(pi * 100 + li))
            for e in estimators:
                est[e][lvl].append(estimate_sigma(y, e))
    out = {}
    for e in estimators:
        out[e] = {}
        for lvl in levels:
            v, t = np.array(est[e][lvl]), 2 * lvl
            out[e][str(lvl)] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                                "median_rel_err": None if t == 0 else round(float(np.median(np.abs(v - t) / t)), 4),
                                "max": round(float(v.max()), 4)}
    return out


def _small(im: Image.Image) -> Image.Image:
    f = 224 / max(im.size)
    return im.convert("RGB").resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i, dtype=np.float64) for i in (a, b))
    return float(10 * np.log10(255.0 ** 2 / max(((x - y) ** 2).mean(), 1e-10)))


def _denoise(photos: list[tuple[str, Image.Image]], settings: list[str], levels: tuple[float, ...]) -> dict:
    from lookalike.retrieval.denoise import denoise_image, resolve_model
    from lookalike.retrieval.embedders import get_embedder

    emb = get_embedder("efficientnet_lite0")
    model = resolve_model("ddpm-photo")
    inference = dict(model.meta.get("inference") or {})

    @torch.inference_mode()
    def embed(im: Image.Image) -> torch.Tensor:
        return emb(emb.transform(im.convert("RGB"))[None])[0]

    rows: dict[str, dict[str, dict]] = {}
    for pi, (_, im) in enumerate(photos):
        clean_small, clean_e = _small(im), embed(im)
        mp = im.width * im.height / 1e6
        for li, lvl in enumerate(levels):
            y = gaussian_noise(im, lvl, np.random.default_rng(pi * 100 + li))
            cands = [("none", y, 0.0)]
            for s in settings:
                side, steps = s.split(":")
                model.meta["inference"] = {**inference, "work_side": None if side == "full" else int(side)}
                t0 = time.perf_counter()
                r = denoise_image(y, method="ddim", sigma="auto", model="ddpm-photo", steps=int(steps))
                cands.append((s, r.image, (time.perf_counter() - t0) * 1000 / mp))
            for s, out, ms in cands:
                d = rows.setdefault(s, {}).setdefault(str(lvl), {"psnr224": [], "cos": [], "ms_per_mp": []})
                d["psnr224"].append(_psnr(_small(out), clean_small))
                d["cos"].append(float(embed(out) @ clean_e))
                d["ms_per_mp"].append(ms)
        print(f"photo {pi + 1}/{len(photos)} done", flush=True)
    model.meta["inference"] = inference
    return {s: {lvl: {k: round(float(np.mean(v)), 4) for k, v in d.items()} for lvl, d in per.items()}
            for s, per in rows.items()}


def _grid(photos: list[tuple[str, Image.Image]], level: float, settings: list[str], out: str, crop: int = 192) -> None:
    """PNG: one row per photo, columns noisy / each setting / clean, a centre crop at full resolution."""
    from lookalike.retrieval.denoise import denoise_image, resolve_model

    model = resolve_model("ddpm-photo")
    inference = dict(model.meta.get("inference") or {})
    rows = []
    for pi, (_, im) in enumerate(photos):
        y = gaussian_noise(im, level, np.random.default_rng(pi * 100 + 7))
        cells = [y]
        for s in settings:
            side, steps = s.split(":")
            model.meta["inference"] = {**inference, "work_side": None if side == "full" else int(side)}
            cells.append(denoise_image(y, method="ddim", sigma="auto", model="ddpm-photo", steps=int(steps)).image)
        cells.append(im)
        left, top = (im.width - crop) // 2, (im.height - crop) // 2
        rows.append([c.convert("RGB").crop((left, top, left + crop, top + crop)) for c in cells])
    model.meta["inference"] = inference
    pad = 4
    canvas = Image.new("RGB", (len(rows[0]) * (crop + pad), len(rows) * (crop + pad)), "white")
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            canvas.paste(cell, (c * (crop + pad), r * (crop + pad)))
    canvas.save(out)


def _timing(photos: list[tuple[str, Image.Image]]) -> dict:
    """ms of one 1-MP query (the first photo resized to 1224x816, Gaussian 0.5 on 0..1), median of 3 (1 for full
    size): the photo sigma estimate, and ``denoise_image`` with sigma given per working side and step count."""
    from lookalike.retrieval.denoise import denoise_image, estimate_sigma, resolve_model

    y = gaussian_noise(photos[0][1].resize((1224, 816), Image.BICUBIC), 0.5, np.random.default_rng(0))
    model = resolve_model("ddpm-photo")
    inference = dict(model.meta.get("inference") or {})
    denoise_image(y, method="ddim", sigma=1.0)  # warm-up

    def ms(f, n: int = 3) -> float:
        v = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            v.append((time.perf_counter() - t0) * 1000)
        return round(float(np.median(v)), 1)

    out = {"megapixels": round(y.width * y.height / 1e6, 3), "estimate_sigma_photo_ms": ms(lambda: estimate_sigma(y, "photo")),
           "estimate_sigma_auto_ms": ms(lambda: estimate_sigma(y))}
    for side, steps in ((256, 1), (256, 2), (256, 5), (512, 1), (512, 5), (None, 1)):
        model.meta["inference"] = {**inference, "work_side": side}
        out[f"denoise_{side or 'full'}_{steps}_ms"] = ms(lambda steps=steps: denoise_image(y, method="ddim", sigma=1.0, steps=steps),
                                                         3 if side else 1)
    model.meta["inference"] = inference
    out["default_sigma_auto_ms"] = ms(lambda: denoise_image(y, method="ddim"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("sigma", "denoise", "grid", "timing"))
    ap.add_argument("--photos", choices=("dev", "eval"), default="dev")
    ap.add_argument("--max-photos", type=int, default=None)
    ap.add_argument("--estimators", default="learned,wavelet")
    ap.add_argument("--settings", default="full:1,512:1,256:1,256:2,256:5",
                    help="comma-separated WORKSIDE:STEPS (WORKSIDE 'full' = no reduction)")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)))
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default="docs/photo-denoise-grid-dev.png", help="grid PNG")
    ap.add_argument("--grid-level", type=float, default=0.5, help="grid: Gaussian sigma on 0..1")
    args = ap.parse_args()
    torch.set_num_threads(1)
    photos = photo_set(args.photos)[: args.max_photos]
    if args.what == "grid":
        _grid(photos, args.grid_level, args.settings.split(","), args.out)
        print(f"grid: {args.out}")
        return
    if args.what == "timing":
        res = _timing(photos)
    elif args.what == "sigma":
        res = _sigma(photos, args.estimators.split(","))
    else:
        res = _denoise(photos, args.settings.split(","), tuple(float(x) for x in args.levels.split(",")))
    out = {"photos": args.photos, "n_photos": len(photos), "what": args.what, "result": res,
           "machine": "busy shared 2-core CPU, 1 torch thread"}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        from lookalike.fsutil import atomic_write_text

        atomic_write_text(args.json, text)


if __name__ == "__main__":
    main()
