"""Indexing throughput end to end (scan, hash, decode, embed, commit, save) vs the bare model forward, for
today's torch path and an inference runtime (retrieval/runtime.py), in the same run; plus decoding alone.

    python -m benchmarks.indexing --n 512 --size 224 --runtime openvino
    python -m benchmarks.indexing --phone 120      # phone photos: default runtime, torch, imagededup, decode floor

``--phone N``: N phone-sized photos (4032x3024 JPEG q90, every third a portrait turned by EXIF; made once from the
dev photos, see make_phone_photos) indexed with the default model by the default runtime and by ``--runtime
torch`` (new index each run, compiled models cached), imagededup's PHash ``encode_images`` on the same folder (its
own venv, lookalike/bench/common.py), and the single-core decode floor: indexing's own per-file work (read, sha256,
JPEG DCT-scaled decode, EXIF turn, resize, signature: indexer/decoding.decode_file) in one process, and PIL's draft
decode against simplejpeg's scaled decode (when installed) at this size.

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
    from lookalike.indexer.decoding import decode_file
    from lookalike.retrieval.runtime import load_embedder

    emb = load_embedder(model_name, "torch")
    paths = sorted(str(p) for p in folder.iterdir())
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        decode_file(i, p, emb.preprocess)
    return len(paths) / (time.perf_counter() - t0)


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


def phone_decoders(folder: Path, size: int, limit: int = 40) -> dict[str, float]:
    """ms per photo on one core to decode a phone JPEG to at least ``size`` px: PIL's draft (DCT scaling, what
    indexing does), simplejpeg's scaled decode and PyTurboJPEG's (both libjpeg-turbo; each when installed), with the
    pixels compared."""
    import io

    from PIL import Image

    datas = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:limit]]

    def pil(d):
        im = Image.open(io.BytesIO(d))
        im.draft("RGB", (size, size))
        im.load()
        return np.asarray(im)

    variants = [("PIL draft", pil)]
    try:
        import simplejpeg

        variants.append(("simplejpeg min side", lambda d: simplejpeg.decode_jpeg(
            d, colorspace="RGB", min_height=size, min_width=size)))
    except ImportError:
        pass
    try:  # PyTurboJPEG needs the system's libturbojpeg (Debian: libturbojpeg0)
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()

        def turbo(d):
            w, h = tj.decode_header(d)[:2]
            k = next(k for k in (8, 4, 2, 1) if w // k >= size and h // k >= size or k == 1)
            return tj.decode(d, pixel_format=TJPF_RGB, scaling_factor=(1, k))

        variants.append(("PyTurboJPEG scaled", turbo))
    except (ImportError, RuntimeError, OSError):
        pass
    spent = {label: 0.0 for label, _ in variants}
    for _, fn in variants:
        fn(datas[0])
    for rnd in range(3):  # interleaved photo by photo (order alternating): the machine's load hits both alike
        for d in datas:
            for label, fn in (variants if rnd % 2 == 0 else variants[::-1]):
                t0 = time.perf_counter()
                fn(d)
                spent[label] += time.perf_counter() - t0
    out: dict = {label: round(t / (3 * len(datas)) * 1000, 2) for label, t in spent.items()}
    base = variants[0][1](datas[0])
    for label, fn in variants[1:]:
        b = fn(datas[0])
        out[f"{label}: same pixels as PIL"] = bool(base.shape == b.shape and np.array_equal(base, b))
    return out


def phone_floor(folder: Path, preprocess) -> float:
    """Images per second of indexing's per-file work (indexer/decoding.decode_file) in this one process."""
    from lookalike.indexer.decoding import decode_file

    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        if decode_file(i, p, preprocess).pixels is None:
            raise RuntimeError(f"{p}: did not decode")
    return len(paths) / (time.perf_counter() - t0)


PHASH_SCRIPT = """
import sys, time
from imagededup.methods import PHash
t0 = time.perf_counter()
enc = PHash(verbose=False).encode_images(image_dir=sys.argv[1])
print(len(enc), time.perf_counter() - t0)
"""


def phash_rate(folder: Path) -> tuple[float | None, str]:
    """imagededup's PHash ``encode_images`` (its default workers) on the folder: images per second, or None."""
    import subprocess

    from benchmarks.peers import peer_or_reason as imagededup_python  # the pinned imagededup venv (issue 26)

    py, status = imagededup_python()
    if py is None:
        return None, status
    res = subprocess.run([py, "-c", PHASH_SCRIPT, str(folder)], capture_output=True, text=True)
    if res.returncode != 0:
        return None, f"imagededup failed: {res.stderr.strip().splitlines()[-1:]}"
    n, secs = res.stdout.split()[-2:]
    return int(n) / float(secs), status


def phone_main(args) -> int:
    """The ``--phone N`` run (see the module docstring)."""
    import os

    from lookalike.retrieval.engine import Engine
    from lookalike.retrieval.models import DEFAULT_EMBEDDER

    folder = make_phone_photos(Path(args.phone_dir) / f"phone-{args.phone}", args.phone)
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-phone-"))
    load = [os.getloadavg()]
    rates: dict[str, list[float]] = {"default": [], "torch": []}
    walls: dict[str, list[float]] = {"default": [], "torch": []}
    try:
        warm = tmp / "warm"
        warm.mkdir()
        for p in sorted(folder.glob("*.jpg"))[:2]:
            (warm / p.name).write_bytes(p.read_bytes())
        for runtime in ("auto", "torch"):  # compile / load the models once, outside the timing
            with Engine.open(tmp / f"warm-{runtime}", runtime=runtime) as e:
                e.add([warm], progress=False)
                pre = e.embedder.preprocess
        floor = phone_floor(folder, pre)
        for rep in range(args.repeats):
            for label, runtime in (("default", "auto"), ("torch", "torch")):
                with Engine.open(tmp / f"idx-{label}-{rep}", runtime=runtime) as e:
                    t0 = time.perf_counter()
                    rep_ = e.add([folder], progress=False, workers=args.workers)
                    walls[label].append(time.perf_counter() - t0)
                    rates[label].append(rep_.indexed / walls[label][-1])
                    if label == "default":
                        precision = e.config.precision
        phash, status = phash_rate(folder) if not args.no_peer else (None, "skipped")
        decoders = phone_decoders(folder, pre.input_size)
        load.append(os.getloadavg())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"photos": args.phone, "size": "4032x3024 JPEG q90, 1/3 EXIF-turned", "model": DEFAULT_EMBEDDER,
           "default_precision": precision, "repeats": args.repeats,
           "default_img_s": round(float(np.median(rates["default"])), 1), "default_runs": [round(r, 1) for r in rates["default"]],
           "default_wall_s": round(float(np.median(walls["default"])), 2),
           "torch_img_s": round(float(np.median(rates["torch"])), 1), "torch_runs": [round(r, 1) for r in rates["torch"]],
           "imagededup_phash_img_s": None if phash is None else round(phash, 1), "imagededup": status,
           "decode_floor_one_core_img_s": round(floor, 1), "decoders_ms_per_photo": decoders,
           "loadavg_before": [round(x, 2) for x in load[0]], "loadavg_after": [round(x, 2) for x in load[-1]],
           "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.phone} phone photos ({out['size']}), model {DEFAULT_EMBEDDER} (default runtime: {precision}), median of {args.repeats} "
          f"runs; load average {out['loadavg_before']} before, {out['loadavg_after']} after, {out['cpus']} CPUs")
    print("| | img/s (per run) |")
    print("|---|---|")
    print(f"| `lookalike index`, default runtime | {out['default_img_s']} ({', '.join(map(str, out['default_runs']))}) |")
    print(f"| `lookalike index --runtime torch` | {out['torch_img_s']} ({', '.join(map(str, out['torch_runs']))}) |")
    print(f"| imagededup PHash `encode_images` | {out['imagededup_phash_img_s']} ({status}) |")
    print(f"| decode floor: read, hash, DCT-scaled decode, EXIF, resize, signature, one core | "
          f"{out['decode_floor_one_core_img_s']} |")
    print("decoders, ms per photo on one core: " + ", ".join(f"{k} {v}" for k, v in decoders.items()))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phone", type=int, default=0, metavar="N", help="the phone-photo run on N photos (see above)")
    ap.add_argument("--phone-dir", default=str(Path(tempfile.gettempdir()) / "lookalike-bench"),
                    help="where the phone photos are made once and kept")
    ap.add_argument("--no-peer", action="store_true", help="--phone: skip imagededup")
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
    if args.phone:
        return phone_main(args)

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
