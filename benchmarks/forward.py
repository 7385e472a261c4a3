"""Bare model forward, images per second on ready tensors, per runtime and precision, side by side in one run.

    python -m benchmarks.forward --model efficientnet_lite0 --sizes 224 128
    python -m benchmarks.forward --model ntxent-copies --sizes 0

Each row is the median of ``--repeats`` interleaved passes of ``--n`` images in batches of ``--batch-size``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.indexing import bare_forward

CONFIGS = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ntxent-copies")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 128], help="input sizes (0: the model's own)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{args.model}, batch {args.batch_size}, {args.n} images x {args.repeats} interleaved passes (median img/s)")
    print("| input | " + " | ".join(f"{r} {p}" for r, p in CONFIGS) + " |")
    print("|---" * (len(CONFIGS) + 1) + "|")
    for size in args.sizes:
        runs: dict[tuple[str, str], list[float]] = {c: [] for c in CONFIGS}
        for _ in range(args.repeats):
            for c in CONFIGS:
                try:
                    runs[c].append(bare_forward(f"{args.model}@{size}" if size else args.model, args.n, args.batch_size, *c))
                except Exception as exc:  # a runtime or precision this machine lacks
                    print(f"{c}: {exc}", file=sys.stderr)
        base = float(np.median(runs[CONFIGS[0]]))
        cells = [f"{np.median(v):.1f} ({np.median(v) / base:.2f}x)" if v else "n/a" for v in runs.values()]
        print(f"| {args.model} {f'{size} px' if size else '(its own size)'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
