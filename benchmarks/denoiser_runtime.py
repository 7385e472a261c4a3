"""What an inference runtime would change for the denoisers: one U-Net forward (one DDIM step), torch vs
OpenVINO fp32 / bf16, on the shapes the shipped DDPMs run (MNIST 28x28 grey, CIFAR-10 32x32, a 256x160 photo
tile), with the largest difference of the predicted noise against torch.

    python -m benchmarks.denoiser_runtime

A measurement only: the denoisers run on torch (the runtime serves the embedders).
"""
from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {"ddpm-mnist": (1, 1, 28, 28), "ddpm-cifar10": (1, 3, 32, 32), "ddpm-photo": (1, 3, 160, 256)}


def _median_ms(fn, n: int = 30) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1000


def main() -> int:
    import openvino as ov

    from lookalike.retrieval.denoise.query import resolve_model

    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    print(f"torch threads {torch.get_num_threads()}; OpenVINO CPU: {', '.join(caps)}")
    print("| model | input | torch ms | OpenVINO fp32 ms | OpenVINO bf16 ms | max abs diff fp32 / bf16 |")
    print("|---|---|---|---|---|---|")
    for name, shape in SHAPES.items():
        unet = resolve_model(name).unet.eval()
        x = torch.randn(*shape)
        t = torch.full((shape[0],), 500, dtype=torch.long)
        with torch.inference_mode():
            ref = unet(x, t).numpy()
            torch_ms = _median_ms(lambda unet=unet, x=x, t=t: unet(x, t))
        buf = io.BytesIO()
        torch.onnx.export(unet, (x, t), buf, dynamo=False, input_names=["x", "t"], output_names=["eps"],
                          opset_version=18)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "unet.onnx"
            path.write_bytes(buf.getvalue())
            model = core.read_model(str(path))
            cells, diffs = [], []
            for prec in ("f32", "bf16"):
                if prec == "bf16" and "BF16" not in caps:
                    cells.append("n/a")
                    continue
                req = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": prec,
                                                        "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
                feed = {"x": x.numpy(), "t": t.numpy()}
                out = req.infer(feed)[0]
                diffs.append(f"{np.abs(out - ref).max():.2g}")
                cells.append(f"{_median_ms(lambda req=req, feed=feed: req.infer(feed)):.2f}")
        print(f"| {name} | {'x'.join(map(str, shape[1:]))} | {torch_ms:.2f} | {cells[0]} | {cells[1]} | "
              f"{' / '.join(diffs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
