"""The fixed-size DDPM U-Nets (28x28 MNIST, 32x32 CIFAR-10) compiled with OpenVINO for this CPU.

One U-Net forward (one DDIM step) took 2.37 / 2.81 ms instead of torch's 6.44 / 6.78 ms, with noise predictions
within 2e-6 of torch's (fp32; `benchmarks/denoiser_runtime.py`, quiet 2-core machine). The compiled model is
cached beside the embedders' (`retrieval.runtime.cache_dir()`), keyed by the checkpoint's bytes and the OpenVINO
version; a damaged cache file is compiled again. Any-size (photo) models stay on torch: their padding depends on
the input's shape, which an exported graph would freeze. Without OpenVINO everything runs on torch.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from lookalike.log import logger

from ..runtime import cache_dir, compile_cached
from .diffusion import Diffusion

__all__ = ["compiled_eps"]

_log = logger(__name__)

_FORMAT = "unet-1"


def compiled_eps(diffusion: Diffusion, path: Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``diffusion``'s noise prediction run by OpenVINO fp32, or None (any-size model, no OpenVINO, export failed)."""
    if diffusion.any_size:
        return None
    try:
        ov = importlib.import_module("openvino")
        version = importlib.metadata.version("openvino")
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None
    key = hashlib.sha256(Path(path).read_bytes() + f"|{version}|{_FORMAT}".encode()).hexdigest()[:16]
    blob = cache_dir() / "denoisers" / f"{Path(path).stem[:40]}-{key}-fp32.blob"
    core = ov.Core()

    def build(onnx: Path) -> Any:
        size, ch = diffusion.image_size, diffusion.channels
        x, t = torch.zeros(2, ch, size, size), torch.full((2,), 10, dtype=torch.long)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(diffusion.unet.eval(), (x, t), buf, dynamo=False, input_names=["x", "t"],
                              output_names=["eps"], dynamic_axes={"x": {0: "n"}, "t": {0: "n"}, "eps": {0: "n"}},
                              opset_version=18)
        onnx.write_bytes(buf.getvalue())
        return core.read_model(str(onnx))

    try:
        with tempfile.TemporaryDirectory() as d:  # the exported file lives until the model is compiled
            compiled = compile_cached(core, blob, {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
                                      lambda: build(Path(d) / "unet.onnx"))
    except Exception as exc:  # an operator the exporter or the plugin lacks: stay on torch
        _log.warning(f"{path}: denoiser not compiled ({type(exc).__name__}); it runs on torch")
        return None
    request = compiled.create_infer_request()
    lock = threading.Lock()

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with lock:
            out = request.infer({"x": x.detach().numpy().astype("float32", copy=False),
                                 "t": t.detach().numpy().astype("int64", copy=False)})[0]
        return torch.from_numpy(out.copy())

    return eps
