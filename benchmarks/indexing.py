"""Indexing throughput end to end (scan, hash, decode, embed, commit, save) vs the bare model forward, for
today's torch path and an inference runtime (retrieval/runtime.py), in the same run; plus decoding alone.

    python benchmarks/indexing.py --n 512 --size 224 --runtime openvino

All figures come from the same run, same embedder, same image size, same batch size; the runtimes are
measured in turn, ``--repeats`` times, and the medians are compared. The photos are 800x600 JPEGs.
"decode" is the decoding workers' job alone (read, JPEG draft decode, resize to the input size) on one core.
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


PHONE_SIZE = (4032, 3024)


def make_phone_photos(folder: Path, n: int, seed: int = 0) -> Path:
    """n distinct phone-sized JPEGs (4032x3024, quality 90, a camera's grain) from the dev photos (Debian mate/ukui
    wallpapers, scikit-learn's and matplotlib's samples; never the scikit-image eval photos); every third one is
    stored turned on its side with an EXIF orientation (6 or 8) that turns it back, as phones write portraits.
    Made once per ``n`` and seed in ``folder`` (kept between runs: making them takes a minute)."""
    from PIL import Image

    from lookalike.data.photosets import dev_photos

    done = folder / f".complete-{n}-{seed}"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    photos = [im for _, im in dev_photos(max_side=PHONE_SIZE[0])]
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = photos[i % len(photos)]
        portrait = i % 3 == 2  # held upright: stored sideways, the EXIF orientation turns it back
        W, H = PHONE_SIZE[::-1] if portrait else PHONE_SIZE
        # a random window of the photo at the picture's aspect, brought to the phone's size
        f = float(rng.uniform(0.6, 1.0))
        ch = max(12, int(im.height * f))
        cw = int(ch * W / H)
        if cw > im.width:
            cw, ch = im.width, int(im.width * H / W)
        x, y = int(rng.integers(0, im.width - cw + 1)), int(rng.integers(0, im.height - ch + 1))
        big = im.crop((x, y, x + cw, y + ch)).resize((W, H), Image.BICUBIC)
        grain = rng.normal(0.0, 4.0, (H // 4, W // 4, 1)).astype(np.float32)  # sensor noise, 4 px grains
        arr = np.asarray(big, np.float32) + np.repeat(np.repeat(grain, 4, 0), 4, 1)
        big = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        exif = Image.Exif()
        exif[0x0110] = "lookalike phone"  # Model
        if portrait:
            orient = 6 if i % 2 else 8  # 6: turn 90 clockwise to view, 8: 90 counter-clockwise
            big = big.transpose(Image.Transpose.ROTATE_90 if orient == 6 else Image.Transpose.ROTATE_270)
            exif[0x0112] = orient
        big.save(folder / f"IMG_{i:04d}.jpg", quality=90, exif=exif.tobytes())
    done.touch()
    return folder


def bare_forward(model_name: str, n: int, batch: int, runtime: str = "torch", precision: str = "fp32") -> float:
    """Images per second of the model alone on ready tensors."""
    from lookalike.retrieval.runtime import load_embedder

    emb = load_embedder(model_name, runtime, precision)
    x = torch.randn(batch, 3, emb.preprocess.input_size, emb.preprocess.input_size)
    emb.embed_tensor(x[:4])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < n:
        emb.embed_tensor(x)
        done += batch
    return done / (time.perf_counter() - t0)


def decode_only(model_name: str, folder: Path) -> float:
    """Images per second of the decoding workers' job (read, draft-decode, resize) on one core."""
    from lookalike.indexer.pipeline import ImageFileDataset
    from lookalike.retrieval.runtime import load_embedder

    emb = load_embedder(model_name, "torch")
    paths = sorted(str(p) for p in folder.iterdir())
    ds = ImageFileDataset(paths, emb.transform_uint8, draft_size=emb.preprocess.input_size)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - t0)


def decode_variants(folder: Path, size: int) -> dict[str, float]:
    """ms per photo on one core to read and bring it to ``size``: full decode, JPEG draft (today's path),
    draft followed by PIL's integer ``reduce`` to just above the size before the bicubic resize, and, when
    PyTurboJPEG is importable, libjpeg-turbo's scaled decoding at 1/2 and at the smallest m/8 scale still >= size."""
    from PIL import Image

    from lookalike.retrieval.preprocess import PreprocessConfig

    pre = PreprocessConfig(input_size=size)
    paths = sorted(folder.iterdir())

    def full(p):
        return pre.to_uint8(Image.open(p).convert("RGB"))

    def draft(p):
        im = Image.open(p)
        im.draft("RGB", (size, size))
        return pre.to_uint8(im.convert("RGB"))

    def draft_reduce(p):
        im = Image.open(p)
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        factor = max(1, min(im.width, im.height) // (2 * size))
        return pre.to_uint8(im.reduce(factor) if factor > 1 else im)

    variants = [("full decode", full), ("JPEG draft", draft), ("draft + reduce", draft_reduce)]
    try:  # libjpeg-turbo's own scaled decoding (Debian libturbojpeg0 + pip PyTurboJPEG<2); not a dependency
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()

        def turbo(p, scale):
            w, h = Image.open(p).size
            factors = sorted(f for f in tj.scaling_factors if f[0] <= f[1] and f[0] / f[1] * min(w, h) >= size)
            f = min(factors, key=lambda f: f[0] / f[1]) if scale == "smallest" else (1, 2)
            return pre.to_uint8(Image.fromarray(tj.decode(open(p, "rb").read(), pixel_format=TJPF_RGB,
                                                          scaling_factor=f)))

        variants += [("turbojpeg 1/2", lambda p: turbo(p, "half")), ("turbojpeg smallest m/8", lambda p: turbo(p, "smallest"))]
    except (ImportError, RuntimeError, OSError):
        pass
    out = {}
    for label, fn in variants:
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        out[label] = round((time.perf_counter() - t0) / len(paths) * 1000, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=0, help="input size (default: the model's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved bare/end-to-end runs (medians reported)")
    ap.add_argument("--runtime", default="openvino", help="runtime compared with torch (openvino, onnxruntime)")
    ap.add_argument("--precisions", nargs="+", default=["fp32"], help="precisions of --runtime to measure (fp32 bf16)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from lookalike.retrieval import embedders
    from lookalike.retrieval.engine import Engine

    model = f"{args.model}@{args.size}" if args.size else args.model
    runtimes = [("torch", "fp32")] + ([(args.runtime, p) for p in args.precisions] if args.runtime != "torch" else [])
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    fwd = {r: [] for r in runtimes}
    e2e = {r: [] for r in runtimes}
    try:
        make_photos(tmp / "imgs", args.n)
        decode = decode_only(model, tmp / "imgs")
        variants = decode_variants(tmp / "imgs", embedders.get_embedder(model).preprocess.input_size)
        for rep in range(args.repeats):  # interleaved, so drift in CPU speed hits every figure alike
            for runtime in runtimes:
                fwd[runtime].append(bare_forward(model, args.n, args.batch_size, *runtime))
                engine = Engine.open(tmp / f"idx-{'-'.join(runtime)}-{rep}", model=model, runtime=runtime[0],
                                     precision=runtime[1])
                t0 = time.perf_counter()
                done = engine.add([tmp / "imgs"], batch_size=args.batch_size, workers=args.workers, progress=False)
                e2e[runtime].append(done.indexed / (time.perf_counter() - t0))
                if rep == 0 and runtime[0] == "torch":
                    t1 = time.perf_counter()
                    rep2 = engine.add([tmp / "imgs"], progress=False)
                    rerun_s = time.perf_counter() - t1
                engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    base = float(np.median(e2e[("torch", "fp32")]))
    for runtime in runtimes:
        f, e = float(np.median(fwd[runtime])), float(np.median(e2e[runtime]))
        rows.append({"runtime": " ".join(runtime), "bare_forward_img_s": round(f, 2), "end_to_end_img_s": round(e, 2),
                     "end_to_end_per_run": [round(x, 2) for x in e2e[runtime]], "vs_torch": round(e / base, 2),
                     "decode_share": round(e / decode, 3)})
    out = {"model": model, "n": args.n, "input_size": embedders.get_embedder(model).preprocess.input_size,
           "batch_size": args.batch_size, "repeats": args.repeats, "workers": args.workers,
           "decode_one_core_img_s": round(decode, 2), "decode_ms_per_photo": variants, "runtimes": rows,
           "rerun_unchanged_s": round(rerun_s, 2), "rerun_unchanged_files": rep2.unchanged,
           "torch_threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{model}, {out['input_size']} px, {args.n} photos x {args.repeats} runs, batch {args.batch_size}, "
              f"workers {args.workers if args.workers is not None else 'default'}; decode alone "
              f"{out['decode_one_core_img_s']} img/s on one core; re-run with nothing changed {out['rerun_unchanged_s']} s")
        print("decode + resize, ms per photo on one core: " + ", ".join(f"{k} {v}" for k, v in variants.items()))
        print("| runtime | bare forward img/s | end-to-end img/s (per run) | vs torch | decode's share of a core |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['runtime']} | {r['bare_forward_img_s']} | {r['end_to_end_img_s']} "
                  f"({', '.join(map(str, r['end_to_end_per_run']))}) | {r['vs_torch']}x | {r['decode_share']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
