"""The default model shipped as one network file vs as its head on the shared backbone file (issue 26): speed and
vectors, in the same run.

    python -m benchmarks.shared_backbone                  # forward passes, every runtime / precision here
    python -m benchmarks.shared_backbone --phone 120      # plus `lookalike index` of the phone photos, interleaved

"whole": ``ntxent-copies`` exported as one ONNX file (what the wheel shipped before issue 26; exported here with
``export_onnx``); "split": the shipped ``efficientnet_lite0.onnx`` + the head-only ``ntxent-copies.onnx``, as
``load_embedder`` runs them (OpenVINO: joined into one network; ONNX Runtime: one after the other). Forward passes:
batches of 32 dev photos (``calibration_photos``), the two alternated, medians of ``--repeats``; the cosine of
the two vectors per photo. ``--phone N``: the phone photos of ``benchmarks.indexing --phone`` indexed with the
default runtime by a fresh process per run, "whole" and "split" alternated; "whole" points the process at a folder
whose ``ntxent-copies`` is the one-file export, which the runtime then compiles from its model cache.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

_PHONE_RUN = """
import json, sys, time
from pathlib import Path
import lookalike.retrieval.export as x
if sys.argv[1]:
    x.ONNX_DIR = Path(sys.argv[1])
from lookalike.retrieval.engine import Engine
tmp, folder, warm = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
with Engine.open(tmp / "warm") as e:  # compile (or load the compiled model) outside the timing
    e.add([warm], progress=False)
with Engine.open(tmp / "idx") as e:
    t0 = time.perf_counter()
    rep = e.add([folder], progress=False)
    print(json.dumps({"img_s": rep.indexed / (time.perf_counter() - t0), "precision": e.config.precision}))
"""


def whole_export(folder: Path) -> Path:
    """``ntxent-copies`` as one ONNX file in ``folder``, with the metadata the wheel shipped before issue 26."""
    from lookalike.retrieval.export import export_onnx, source_digest

    data, meta = export_onnx("ntxent-copies")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ntxent-copies.onnx").write_bytes(data)
    (folder / "ntxent-copies.json").write_text(json.dumps({**meta, "source_sha256": source_digest("ntxent-copies")}))
    return folder / "ntxent-copies.onnx"


def forward(whole: Path, repeats: int) -> list[dict]:
    """img/s of the whole file and of the shipped split per runtime and precision, and their vectors' cosine."""
    import onnxruntime as ort
    import openvino as ov

    from lookalike.data.photos import calibration_photos
    from lookalike.retrieval.runtime import bf16_available, load_embedder

    core, rows = ov.Core(), []
    images = calibration_photos()[:32]

    def whole_runner(runtime: str, precision: str) -> Callable[[np.ndarray], np.ndarray]:
        if runtime == "onnxruntime":
            session = ort.InferenceSession(str(whole), providers=["CPUExecutionProvider"])
            return lambda x: session.run(None, {"x": x})[0]
        compiled = core.compile_model(str(whole), "CPU", {"INFERENCE_PRECISION_HINT": precision.replace("fp", "f"),
                                                          "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[compiled.output(0)])

    for runtime, precision in [("openvino", "bf16")] * bf16_available() + [("openvino", "fp32"), ("onnxruntime", "fp32")]:
        split = load_embedder("ntxent-copies", runtime, precision)
        x = np.stack([split.preprocess.normalize(split.preprocess.to_uint8(im)[None])[0] for im in images])
        fns = {"whole": whole_runner(runtime, precision), "split": split.embed_array}
        out = {k: f(x) for k, f in fns.items()}
        w = out["whole"] / np.linalg.norm(out["whole"], axis=1, keepdims=True)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f(x)
                times[k].append(len(x) / (time.perf_counter() - t0))
        rows.append({"runtime": runtime, "precision": precision,
                     **{f"{k}_img_s": round(float(np.median(v)), 1) for k, v in times.items()},
                     "cosine_min": float((w * out["split"]).sum(1).min()),
                     "max_abs_diff": float(np.abs(w - out["split"]).max())})
    return rows


def phone(n: int, whole_dir: Path, repeats: int, phone_dir: Path) -> dict[str, list[float]]:
    """img/s of `lookalike index` (default runtime) on n phone photos, whole and split alternated, one process each."""
    from benchmarks.indexing import make_phone_photos

    folder = make_phone_photos(phone_dir / f"phone-{n}", n)
    rates: dict[str, list[float]] = {"whole": [], "split": []}
    with tempfile.TemporaryDirectory(prefix="lookalike-split-") as d:
        tmp = Path(d)
        warm = tmp / "warm-photos"
        warm.mkdir()
        for p in sorted(folder.glob("*.jpg"))[:2]:
            shutil.copy(p, warm / p.name)
        env = dict(os.environ, LOOKALIKE_CACHE=str(tmp / "cache"))
        for rep in range(repeats):
            for side, onnx_dir in (("whole", str(whole_dir)), ("split", "")):
                run = tmp / f"{side}-{rep}"
                run.mkdir()
                r = subprocess.run([sys.executable, "-c", _PHONE_RUN, onnx_dir, str(run), str(folder), str(warm)],
                                   capture_output=True, text=True, env=env, check=True)
                rates[side].append(round(json.loads(r.stdout.strip().splitlines()[-1])["img_s"], 1))
                shutil.rmtree(run, ignore_errors=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="forward passes per variant (medians reported)")
    ap.add_argument("--phone", type=int, default=0, metavar="N", help="also index N phone photos, alternated")
    ap.add_argument("--phone-repeats", type=int, default=4)
    ap.add_argument("--phone-dir", default=str(Path(tempfile.gettempdir()) / "lookalike-bench"))
    args = ap.parse_args(argv)
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="lookalike-whole-") as d:
        whole = whole_export(Path(d))
        print(f"whole ntxent-copies.onnx {whole.stat().st_size / 2**20:.1f} MB; split: efficientnet_lite0.onnx + head")
        for row in forward(whole, args.repeats):
            print(json.dumps(row))
        if args.phone:
            rates = phone(args.phone, Path(d), args.phone_repeats, Path(args.phone_dir))
            for side, r in rates.items():
                print(f"phone {args.phone}: `lookalike index` default runtime, {side}: median {np.median(r):.1f} img/s "
                      f"(runs {', '.join(map(str, r))})")
    load.append(os.getloadavg())
    print(f"load average {[round(v, 2) for v in load[0]]} before, {[round(v, 2) for v in load[1]]} after, "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
