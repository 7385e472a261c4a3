"""``--denoise auto`` on a photo without torch (the core install): the learned noise estimate, run by OpenVINO from
the shipped ONNX export (retrieval/export.py), decides between searching the photo as it is and fusing the
low-frequency channel, as :func:`~lookalike.retrieval.denoise.query.denoise_image` does with ``photo_rule``.
Every other denoising (the DDPMs, non-local means, ``lookalike denoise``) needs torch: one line naming the extra.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..export import shipped_denoise
from ..runtime import import_runtime, cache_dir, compile_cached
from .base import (AUTO_FUSE_SIGMA, AUTO_LOWFREQ_WEIGHT, DenoiseError, DenoiseResult, check_image, check_request, is_gray,
                   to_array)

__all__ = ["denoise_image", "estimate_sigma"]

NEEDS_TORCH = "needs torch: pip install 'lookalike[train]'"
_LOCK = threading.Lock()
_NET: list[Callable[[np.ndarray], np.ndarray]] = []


def _sigma_net() -> Callable[[np.ndarray], np.ndarray]:
    """(N, 1, H, W) float32 in [-1, 1] -> log sigma (N,), compiled once from the shipped export."""
    with _LOCK:
        if not _NET:
            shipped = shipped_denoise()
            if shipped is None:
                raise DenoiseError(f"the learned noise estimator is not shipped as ONNX here; --denoise {NEEDS_TORCH}")
            onnx, meta = shipped
            ov = import_runtime("openvino")
            core = ov.Core()
            blob = cache_dir() / "denoisers" / f"sigma-estimator-{meta['sigma_onnx_sha256'][:16]}-fp32.blob"
            compiled = compile_cached(core, blob, {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1},
                                      lambda: core.read_model(str(onnx)))
            request = compiled.create_infer_request()
            _NET.append(lambda x: np.array(request.infer({0: np.ascontiguousarray(x, np.float32)})[0]))
        return _NET[0]


def estimate_sigma(image: Image.Image) -> float:
    """The ``auto`` noise estimate of :func:`~lookalike.retrieval.denoise.query.estimate_sigma` (the learned
    estimator on the centre 128x128 crop, channels averaged in log space), without torch."""
    check_image(image)
    w, h = image.size
    c = 128
    top, left = max(0, int((h - c) * 0.5)), max(0, int((w - c) * 0.5))
    arr, gray = to_array(image.crop((left, top, min(w, left + c), min(h, top + c))))
    x = np.ascontiguousarray(arr.transpose(2, 0, 1)[:1 if gray else 3, None])  # (C, 1, H, W): one channel each
    net = _sigma_net()
    with _LOCK:
        return float(np.exp(net(x).mean()))


def _domains() -> dict[str, Any]:
    shipped = shipped_denoise()
    if shipped is None:
        raise DenoiseError(f"the denoisers' domains are not shipped here; --denoise {NEEDS_TORCH}")
    return shipped[1]["ddpm"]


def denoise_image(image: Image.Image, method: str = "auto", sigma: float | str = "auto", model: str | None = None,
                  n_samples: int = 1, steps: int | None = None, seed: int = 0, photo_rule: bool = False
                  ) -> DenoiseResult:
    """The photo rule of ``--denoise auto`` (``photo_rule``, no ``model``, a picture no exact-size DDPM fits);
    DenoiseError naming the ``train`` extra for anything that needs a network on torch."""
    t0 = time.perf_counter()
    estimated = check_request(image, method, sigma, n_samples, steps)
    w, h = image.size
    gray = is_gray(image)
    exact = [name for name, d in _domains().items()
             if d["image_size"] is not None and (d["image_size"], d["image_size"]) == (w, h) and (d["channels"] == 1) == gray]
    if not (photo_rule and method == "auto" and model is None and not exact):
        what = f"with {exact[0]}" if exact and model is None else f"by {method}" if model is None else f"with {model}"
        raise DenoiseError(f"denoising a {w}x{h} query {what} {NEEDS_TORCH}")
    sig = estimate_sigma(image) if estimated else float(sigma)
    from lookalike.indexer.loading import to_rgb

    rgb = to_rgb(image)
    if sig > AUTO_FUSE_SIGMA:
        method_used, weight = "lowfreq", AUTO_LOWFREQ_WEIGHT
        reason = (f"{w}x{h} photo with noise {sig:.2f} > {AUTO_FUSE_SIGMA}: searched with the low-frequency channel "
                  f"fused (weight {AUTO_LOWFREQ_WEIGHT:g})")
    else:
        method_used, weight = "none", 0.0
        reason = f"{w}x{h} photo with noise {sig:.2f} <= {AUTO_FUSE_SIGMA}: searched as it is"
    return DenoiseResult(rgb, method_used, sig, estimated, None, reason, [rgb], (time.perf_counter() - t0) * 1000.0,
                         weight)
