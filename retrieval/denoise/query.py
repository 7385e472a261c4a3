"""Denoise a noisy query image before it is embedded: DDPM / DDIM started at the query's noise level, or classical.

``denoise_image`` is what ``lookalike search --denoise`` and ``Engine.search(denoise=...)`` call. Noise levels are on
the [-1, 1] pixel scale: a noisy image is y = x + sigma * n with x in [-1, 1] (sigma 0.5 there is 0.25 on [0, 1]).

Constants, each chosen on the dev photos only (figures: docs/benchmarks.md section 6.2; how they were chosen:
docs/history/benchmarks-2026-11.md section 11.10, "A photo diffusion denoiser"); the photo rule's are in :mod:`.base`:

- ``PHOTO_INFERENCE``: how an any-size (photo) model runs unless its checkpoint says otherwise.
- ``PHOTO_SIGMA_CALIBRATION``: (raw, true) pairs mapping the learned sigma estimate on photos.
- ``PHOTO_CLIP_RMS``: (nominal sigma, noise RMS left after 8-bit clipping); the photo denoiser starts from the RMS.
- ``PHOTO_SIGMA_MAX``: cap of the extrapolation above the last calibration pair.
- ``DENOISE_THREADS``: torch threads of the small denoising nets (more are slower on a busy few-core CPU).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import CheckpointError
from .. import models
from ..models import card_path, cards, get_card, shipped
from .base import (AUTO_FUSE_SIGMA, AUTO_LOWFREQ_WEIGHT, METHODS, DenoiseError, DenoiseResult, check_image, check_request,
                   is_gray,
                   to_array, consistency_score)
from .diffusion import Diffusion, load_diffusion
from .sigma import SigmaNet, load_sigma_net, wavelet_sigma

__all__ = ["DenoiseResult", "DenoiseError", "denoise_image", "estimate_sigma", "consistency_score",
           "classical_denoise", "shipped_models", "resolve_model", "METHODS"]

_LOCK = threading.Lock()
_MODELS: dict[str, Diffusion | SigmaNet | None] = {}
# how an any-size (photo) model runs unless its checkpoint's metadata "inference" says otherwise
PHOTO_INFERENCE = {"steps": 5, "work_side": 256, "tile": 256, "overlap": 32}
# (raw, true) pairs of estimate_sigma(..., "photo") on the dev photos (python -m benchmarks.photo_denoise sigma)
PHOTO_SIGMA_CALIBRATION = ((0.014, 0.0), (0.189, 0.2), (0.443, 0.5), (0.973, 1.0), (1.402, 1.5), (1.545, 2.0))
# (nominal sigma, RMS of the noise left in the 8-bit file after clipping to [-1, 1]) on the dev photos
PHOTO_CLIP_RMS = ((0.0, 0.0), (0.1, 0.095), (0.2, 0.186), (0.5, 0.424), (1.0, 0.694), (1.5, 0.839), (2.0, 0.92),
                  (2.5, 0.97))
PHOTO_SIGMA_MAX = 2.5  # cap of the extrapolation above the last pair (the raw estimate saturates near 1.6)
DENOISE_THREADS = 1  # torch threads of the small denoising nets


class _threads:
    """Temporarily run torch with ``n`` intra-op threads (None: leave as is)."""

    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, None

    def __enter__(self) -> None:
        if self.n:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            torch.set_num_threads(self.old)


def shipped_models() -> dict[str, Path]:
    """Shipped DDPM denoisers by name (``ddpm-mnist``, ``ddpm-cifar10``) whose file exists."""
    return shipped("ddpm")


def resolve_model(model: str) -> Diffusion:
    """Load (cached) a DDPM by shipped name or checkpoint path; DenoiseError with the reason otherwise."""
    card = get_card(model)
    path = card_path(card) if card is not None and card.kind == "ddpm" else Path(model).expanduser()
    if not path.is_file():
        names = ", ".join(shipped_models()) or "none shipped"
        raise DenoiseError(f"--model {model}: not a shipped denoiser ({names}) nor an existing checkpoint file")
    key = str(path.resolve())
    with _LOCK:
        if key not in _MODELS:
            try:
                diffusion = load_diffusion(path)
            except CheckpointError as exc:
                raise DenoiseError(str(exc)) from exc
            if not diffusion.any_size:  # compiled on its first denoising step, not when merely picked
                diffusion.eps_fn = _compile_on_first_use(diffusion, path)
            _MODELS[key] = diffusion
        return _MODELS[key]


def _compile_on_first_use(diffusion: Diffusion, path: Path):
    """A noise prediction that compiles ``diffusion``'s U-Net for this CPU at its first call (retrieval/denoise/
    compiled.py; the U-Net on torch when that cannot be done), then runs the compiled one."""
    done: list = []

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with _LOCK:
            if not done:
                from .compiled import compiled_eps

                done.append(compiled_eps(diffusion, path) or diffusion.unet)
        return done[0](x, t)

    return eps


def _sigma_path() -> Path:
    return card_path(cards("sigma-estimator")[0])


def _sigma_net() -> SigmaNet | None:
    key = "__sigma__"
    with _LOCK:
        if key not in _MODELS:
            path = _sigma_path()
            net = None
            if path.is_file():
                try:
                    net = load_sigma_net(path)
                except CheckpointError:
                    net = None
            _MODELS[key] = net
        return _MODELS[key]


def estimate_sigma(image: Image.Image, estimator: str = "auto") -> float:
    """Noise level of an image on the [-1, 1] scale.

    ``auto`` uses the shipped learned estimator (robust to the clipping of noisy 8-bit files; centre 128x128 crop
    of large images) and falls back to wavelet MAD when it is missing; ``learned`` / ``wavelet`` force one.
    ``photo`` is the learned estimator made for photos: the median over a 3x3 grid of 128x128 crops, mapped through
    :data:`PHOTO_SIGMA_CALIBRATION` (fitted on the dev photos; the raw estimate reads 12% low at sigma 0.2-0.5 and
    saturates near 1.6, docs/benchmarks.md section 11); images of at most 128 px get the plain learned estimate.
    """
    check_image(image)
    if estimator not in ("auto", "learned", "wavelet", "photo"):
        raise DenoiseError(f"unknown sigma estimator '{estimator}' (choose auto, learned, wavelet or photo)")
    net = _sigma_net() if estimator != "wavelet" else None
    if estimator in ("learned", "photo") and net is None:
        raise DenoiseError(f"{_sigma_path()}: learned sigma estimator missing")
    if net is None:
        arr, gray = to_array(image)
        return wavelet_sigma(arr[..., 0] if gray else arr)
    w, h = image.size
    c = 128
    grid = 3 if estimator == "photo" and (h > c or w > c) else 1
    crops = []  # cut before converting: a 1 MP photo's float copy alone cost ~35 ms
    for i in range(grid):
        for j in range(grid):
            top = max(0, int((h - c) * (i + 0.5) / grid))
            left = max(0, int((w - c) * (j + 0.5) / grid))
            crops.append(image.crop((left, top, min(w, left + c), min(h, top + c))))
    arr = np.stack([to_array(cr)[0] for cr in crops])
    gray = to_array(crops[0])[1] if grid == 1 else is_gray(image)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    if gray:
        x = x[:, :1]
    with _threads(DENOISE_THREADS):
        est = float(net.estimate(x).median())
    if grid > 1:
        raw, true = zip(*PHOTO_SIGMA_CALIBRATION)
        if est <= raw[-1]:
            return float(np.interp(est, raw, true))
        slope = (true[-1] - true[-2]) / (raw[-1] - raw[-2])
        return float(min(PHOTO_SIGMA_MAX, true[-1] + slope * (est - raw[-1])))
    return est


def classical_denoise(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Non-local means of a float image in [-1, 1] ((H,W) or (H,W,C)) at noise level sigma ([-1,1] scale)."""
    from skimage.restoration import denoise_nl_means

    s01 = max(float(sigma), 1e-4) / 2.0  # skimage works on [0, 1]
    a = (np.asarray(arr, dtype=np.float64) + 1.0) / 2.0
    out = denoise_nl_means(a, h=0.8 * s01, sigma=s01, patch_size=5, patch_distance=6, fast_mode=True,
                           channel_axis=-1 if a.ndim == 3 else None)
    return np.clip(out * 2.0 - 1.0, -1.0, 1.0)


def _to_pil(arr: np.ndarray) -> Image.Image:
    a = np.clip((arr + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return Image.fromarray(a, "RGB")


def _pick_model(w: int, h: int, gray: bool, model: str | None) -> tuple[Diffusion | None, str | None, str | None]:
    """(diffusion, model name, fallback reason); without ``model``, the shipped DDPM whose own size and channels fit.

    A model whose checkpoint says ``image_size`` None (fully convolutional, e.g. ``ddpm-photo``) fits any size; a
    3-channel one also fits grey images (it was trained on grey patches too). Exact-size models win over it, so
    28x28 grey and 32x32 colour queries keep ddpm-mnist / ddpm-cifar10.
    """
    if model is None:
        known, any_size = [], []
        for name in shipped_models():
            diffusion = resolve_model(name)
            size, gray_model = diffusion.image_size, diffusion.channels == 1
            if diffusion.any_size:
                if gray or not gray_model:
                    any_size.append((diffusion, name))
                known.append(f"{name}: any size {'grayscale' if gray_model else 'colour or grayscale'}")
                continue
            if (size, size) == (w, h) and gray_model == gray:
                return diffusion, name, None
            known.append(f"{name}: {size}x{size} {'grayscale' if gray_model else 'colour'}")
        if any_size:
            return any_size[0][0], any_size[0][1], None
        kind = "grayscale" if gray else "colour"
        return None, None, (f"{w}x{h} {kind} image is outside every shipped DDPM's domain "
                            f"({', '.join(known) or 'none found under ' + str(models.MODELS_DIR)})")
    diffusion = resolve_model(model)
    size, ch = diffusion.image_size, diffusion.channels
    if ch == 1 and not gray:
        return None, model, f"colour image does not match {model}, trained on grayscale images"
    if diffusion.any_size:
        return diffusion, model, None
    if (w, h) != (size, size):
        return None, model, f"{w}x{h} image does not match {model}'s training size {size}x{size}"
    if ch == 3 and gray:
        return None, model, f"grayscale image does not match {model}, trained on colour images"
    return diffusion, model, None


def denoise_image(image: Image.Image, method: str = "auto", sigma: float | str = "auto", model: str | None = None,
                  n_samples: int = 1, steps: int | None = None, seed: int = 0, photo_rule: bool = False
                  ) -> DenoiseResult:
    """Denoise a query image; ``method='auto'`` uses DDIM with the DDPM matching the image's domain: 28x28 grey,
    32x32 colour, and ``ddpm-photo`` for every other size.

    ``photo_rule`` (what search uses): under ``auto`` a photo is not denoised; when its estimated noise exceeds
    AUTO_FUSE_SIGMA the result's method is ``lowfreq`` (the search fuses the low-frequency channel), else
    ``none``. On the eval photos that finds every original at every noise level, where ``ddpm-photo`` finds fewer
    (Gaussian 0.5: 13 of 15) at about 1 s per megapixel (docs/benchmarks.md sections 11.9, 11.10).

    ``sigma='auto'`` estimates the noise level. ``n_samples > 1`` draws several denoised samples (ancestral DDPM, or
    stochastic DDIM with eta=0.5 for the extra ones) for mean-embedding search and a consistency score.
    ``steps`` None: the model's own default (checkpoint metadata ``inference.steps``), else 20. A fully
    convolutional model (``ddpm-photo``) runs on the image box-reduced to its ``inference.work_side`` and tiled,
    and the result is scaled back to the input size (:func:`_denoise_photo`).
    """
    t0 = time.perf_counter()
    estimated = check_request(image, method, sigma, n_samples, steps)
    if not estimated:
        sig = float(sigma)
    gray = is_gray(image)
    w, h = image.size
    diffusion, name, reason = (None, None, None)
    if method in ("auto", "ddpm", "ddim"):
        diffusion, name, reason = _pick_model(w, h, gray, model)
    # a photo under ``auto``: the low-frequency rule, whose threshold was chosen with the "auto" estimate
    photo_auto = photo_rule and method == "auto" and model is None and (diffusion is None or diffusion.any_size)
    if estimated:  # the photo model gets the photo-calibrated estimate
        sig = estimate_sigma(image, "photo" if diffusion is not None and diffusion.any_size and not photo_auto
                             else "auto")
    used = "classical" if diffusion is None else ("ddim" if method == "auto" else method)

    def done(samples: list[Image.Image], used: str, name: str | None, reason: str | None,
             weight: float = 0.0) -> DenoiseResult:
        return DenoiseResult(samples[0], used, sig, estimated, name, reason, samples,
                             (time.perf_counter() - t0) * 1000.0, weight)

    if photo_auto:
        from lookalike.indexer.loading import to_rgb

        if sig > AUTO_FUSE_SIGMA:
            return done([to_rgb(image)], "lowfreq", None, f"{w}x{h} photo with noise {sig:.2f} > {AUTO_FUSE_SIGMA}: "
                        f"searched with the low-frequency channel fused (weight {AUTO_LOWFREQ_WEIGHT:g})",
                        AUTO_LOWFREQ_WEIGHT)
        return done([to_rgb(image)], "none", None, f"{w}x{h} photo with noise {sig:.2f} <= {AUTO_FUSE_SIGMA}: "
                    "searched as it is")

    arr, _ = to_array(image)
    if sig < 0.005:  # below the first diffusion step's noise level: nothing to remove
        return done([_to_pil(arr)], "none", None, reason or "noise level ~0: image returned unchanged")
    if diffusion is None:
        src = arr[..., 0] if gray else arr
        return done([_to_pil(classical_denoise(src, sig))], "classical", None, reason)
    inference = {**(PHOTO_INFERENCE if diffusion.any_size else {}), **(diffusion.meta.get("inference") or {})}
    steps = int(steps if steps is not None else inference.get("steps", 20))
    g = torch.Generator().manual_seed(int(seed))
    if diffusion.any_size:
        with _threads(DENOISE_THREADS):
            out = _denoise_photo(diffusion, arr, gray, sig, used, n_samples, steps, g, inference)
        return done([_to_pil(o) for o in out], used, name, None)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    if diffusion.channels == 1:
        x = x[:, :1]
    with _threads(DENOISE_THREADS):
        out = _run_diffusion(diffusion, x, sig, used, n_samples, steps, g)
    samples = [_to_pil(o.permute(1, 2, 0).numpy()[..., 0] if diffusion.channels == 1 else o.permute(1, 2, 0).numpy())
               for o in out]
    return done(samples, used, name, None)


def work_factor(w: int, h: int, work_side: int | None) -> int:
    """Integer box-reduction factor that brings the long side to at most ``work_side`` (1: full size)."""
    if not work_side:
        return 1
    return max(1, -(-max(w, h) // int(work_side)))


def _denoise_photo(diffusion: Diffusion, arr: np.ndarray, gray: bool, sig: float, used: str, n_samples: int,
                   steps: int, g: torch.Generator, inference: dict) -> list[np.ndarray]:
    """Any-size model: box-reduce by :func:`work_factor` (noise / f), DDIM in overlapping tiles from the step of the
    clipped noise's RMS (:data:`PHOTO_CLIP_RMS`), bicubic back to the input size; (H,W,3) arrays in [-1, 1]."""
    h, w = arr.shape[:2]
    f = work_factor(w, h, inference.get("work_side"))
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    if gray:
        x = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    if f > 1:
        x = torch.nn.functional.avg_pool2d(x, f, ceil_mode=True)
    nominal, rms = zip(*PHOTO_CLIP_RMS)
    sig_w = float(np.interp(sig, nominal, rms)) / f  # the noise the file holds, then averaged over f x f pixels
    tile, overlap = int(inference.get("tile", 256)), int(inference.get("overlap", 32))
    outs = []
    for i in range(n_samples):
        if used == "ddim" and i == 0:
            o = diffusion.denoise_tiled(x, sig_w, steps, tile, overlap)
        else:  # extra samples: stochastic DDIM (eta 0.5) or ancestral DDPM, tile by tile
            o = diffusion.denoise_tiled(x, sig_w, steps, tile, overlap, method=used, eta=0.5, generator=g)
        if f > 1:
            o = torch.nn.functional.interpolate(o, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
        outs.append(o[0].permute(1, 2, 0).numpy())
    return outs


def _run_diffusion(diffusion: Diffusion, x: torch.Tensor, sig: float, used: str, n_samples: int, steps: int,
                   g: torch.Generator) -> torch.Tensor:
    if used == "ddim":
        outs = [diffusion.denoise(x, sig, "ddim", steps)]
        if n_samples > 1:
            outs.append(diffusion.denoise(x.repeat(n_samples - 1, 1, 1, 1), sig, "ddim", steps, eta=0.5, generator=g))
        return torch.cat(outs)
    else:
        out = diffusion.denoise(x.repeat(n_samples, 1, 1, 1), sig, "ddpm", steps, generator=g)
    return out
