"""Denoise a noisy query image before it is embedded: DDPM / DDIM started at the query's noise level, or classical.

``denoise_image`` is what ``lookalike search --denoise`` and ``Engine.search(denoise=...)`` call. Noise levels are on
the [-1, 1] pixel scale: a noisy image is y = x + sigma * n with x in [-1, 1] (sigma 0.5 there is 0.25 on [0, 1]).
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lookalike.errors import LookalikeError

from ..checkpoint import CheckpointError
from .. import models
from ..models import card_path, cards, get_card, shipped
from .diffusion import Diffusion, load_diffusion
from .sigma import SigmaNet, load_sigma_net, wavelet_sigma

__all__ = ["DenoiseResult", "DenoiseError", "denoise_image", "estimate_sigma", "consistency_score",
           "classical_denoise", "shipped_models", "resolve_model", "METHODS"]

METHODS = ("auto", "ddpm", "ddim", "classical")
# ``auto`` on a photo (no shipped DDPM fits its size): above this estimated sigma ([-1, 1] scale) the search fuses
# the low-frequency channel with weight AUTO_LOWFREQ_WEIGHT instead of denoising; below it the query is searched
# as it is. Chosen on the dev photos only (docs/benchmarks.md section 11, "per-query rule"): on dev, tau 0.1-0.3
# found 30/30 at every noise level and tau 0.2 left every edited copy unfused but 0; denoising photos with
# non-local means was worse than no denoising there.
AUTO_FUSE_SIGMA = 0.2
AUTO_LOWFREQ_WEIGHT = 1.0
_GRAY_TOL = 3.0  # mean |channel difference| (0-255) below which an RGB image counts as grayscale
_LOCK = threading.Lock()
_MODELS: dict[str, Diffusion | SigmaNet | None] = {}
# torch threads for the small denoising nets; on a busy few-core CPU more threads are many times slower
DENOISE_THREADS = 1


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


class DenoiseError(LookalikeError, ValueError):
    """Bad denoising input: unknown method, bad sigma, unusable model."""


@dataclass
class DenoiseResult:
    """A denoised query and how it was made."""

    image: Image.Image               # denoised RGB image, same size as the input
    method: str                      # method actually used: "ddpm" | "ddim" | "classical" | "lowfreq" | "none"
    sigma: float                     # noise level used (pixel scale [-1,1], y = x + sigma*n)
    sigma_estimated: bool            # True when estimated automatically
    model: str | None                # denoiser checkpoint name/path used, None for classical
    fallback_reason: str | None      # why the DDPM was not used, else None
    samples: list[Image.Image] = field(default_factory=list)  # all drawn samples (len >= 1)
    ms: float = 0.0                  # wall time
    lowfreq_weight: float = 0.0      # > 0: search fuses the low-frequency channel with this weight (method "lowfreq")

    def to_dict(self) -> dict:
        """How the query was denoised, without the images (for JSON)."""
        return {"method": self.method, "sigma": self.sigma, "sigma_estimated": self.sigma_estimated,
                "model": self.model, "fallback_reason": self.fallback_reason, "samples": len(self.samples),
                "lowfreq_weight": self.lowfreq_weight, "ms": round(self.ms, 1)}


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
                _MODELS[key] = load_diffusion(path)
            except CheckpointError as exc:
                raise DenoiseError(str(exc)) from exc
        return _MODELS[key]


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


def _to_array(image: Image.Image) -> tuple[np.ndarray, bool]:
    """RGB float array in [-1, 1] (H,W,3) and whether it is grayscale-like."""
    from lookalike.indexer.loading import to_rgb

    rgb = np.asarray(to_rgb(image), dtype=np.float32)
    gray = bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() < _GRAY_TOL)
    return rgb / 127.5 - 1.0, gray


def _is_gray(image: Image.Image) -> bool:
    """Whether an image is grayscale-like, judged on a copy of at most 256 px (as :func:`_to_array` judges)."""
    if max(image.size) > 256:
        image = image.copy()
        image.thumbnail((256, 256), Image.BOX)
    return _to_array(image)[1]


def _check_image(image: Image.Image) -> None:
    if not isinstance(image, Image.Image):
        raise DenoiseError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 8 or image.height < 8:
        raise DenoiseError(f"image {image.width}x{image.height}: too small to denoise (min 8x8)")


def estimate_sigma(image: Image.Image, estimator: str = "auto") -> float:
    """Noise level of an image on the [-1, 1] scale.

    ``auto`` uses the shipped learned estimator (robust to the clipping of noisy 8-bit files; centre 128x128 crop
    of large images) and falls back to wavelet MAD when it is missing; ``learned`` / ``wavelet`` force one.
    """
    _check_image(image)
    if estimator not in ("auto", "learned", "wavelet"):
        raise DenoiseError(f"unknown sigma estimator '{estimator}' (choose auto, learned or wavelet)")
    net = _sigma_net() if estimator in ("auto", "learned") else None
    if estimator == "learned" and net is None:
        raise DenoiseError(f"{_sigma_path()}: learned sigma estimator missing")
    if net is None:
        arr, gray = _to_array(image)
        return wavelet_sigma(arr[..., 0] if gray else arr)
    w, h = image.size
    c = 128
    if h > c or w > c:  # crop before converting: a 1 MP photo's float copy alone cost ~35 ms
        top, left = max(0, (h - c) // 2), max(0, (w - c) // 2)
        image = image.crop((left, top, min(w, left + c), min(h, top + c)))
    arr, gray = _to_array(image)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    if gray:
        x = x[:, :1]
    with _threads(DENOISE_THREADS):
        return float(net.estimate(x)[0])


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
    """(diffusion, model name, fallback reason); without ``model``, the shipped DDPM whose own size and channels fit."""
    if model is None:
        known = []
        for name in shipped_models():
            diffusion = resolve_model(name)
            size, gray_model = diffusion.image_size, diffusion.channels == 1
            if (size, size) == (w, h) and gray_model == gray:
                return diffusion, name, None
            known.append(f"{name}: {size}x{size} {'grayscale' if gray_model else 'colour'}")
        kind = "grayscale" if gray else "colour"
        return None, None, (f"{w}x{h} {kind} image is outside every shipped DDPM's domain "
                            f"({', '.join(known) or 'none found under ' + str(models.MODELS_DIR)})")
    diffusion = resolve_model(model)
    size, ch = diffusion.image_size, diffusion.channels
    if (w, h) != (size, size):
        return None, model, f"{w}x{h} image does not match {model}'s training size {size}x{size}"
    if ch == 1 and not gray:
        return None, model, f"colour image does not match {model}, trained on grayscale images"
    if ch == 3 and gray:
        return None, model, f"grayscale image does not match {model}, trained on colour images"
    return diffusion, model, None


def denoise_image(image: Image.Image, method: str = "auto", sigma: float | str = "auto", model: str | None = None,
                  n_samples: int = 1, steps: int = 20, seed: int = 0) -> DenoiseResult:
    """Denoise a query image; ``method='auto'`` uses DDIM with the DDPM matching the image's domain (28x28 grey,
    32x32 colour). On a photo ``auto`` does not change the image: when its estimated noise exceeds
    AUTO_FUSE_SIGMA it returns method ``lowfreq`` (the search fuses the low-frequency channel), else ``none``.

    ``sigma='auto'`` estimates the noise level. ``n_samples > 1`` draws several denoised samples (ancestral DDPM, or
    stochastic DDIM with eta=0.5 for the extra ones) for mean-embedding search and a consistency score.
    """
    t0 = time.perf_counter()
    _check_image(image)
    if method not in METHODS:
        raise DenoiseError(f"--method {method}: unknown (choose {', '.join(METHODS)})")
    if int(n_samples) < 1 or int(n_samples) > 64:
        raise DenoiseError(f"--samples {n_samples}: must be between 1 and 64")
    if int(steps) < 1 or int(steps) > 1000:
        raise DenoiseError(f"--steps {steps}: must be between 1 and 1000")
    estimated = isinstance(sigma, str)
    if estimated:
        if sigma != "auto":
            raise DenoiseError(f"--sigma {sigma}: expected 'auto' or a number >= 0")
        sig = estimate_sigma(image)
    else:
        sig = float(sigma)
        if not np.isfinite(sig) or sig < 0:
            raise DenoiseError(f"--sigma {sigma}: expected 'auto' or a number >= 0")
    gray = _is_gray(image)
    w, h = image.size
    diffusion, name, reason = (None, None, None)
    if method in ("auto", "ddpm", "ddim"):
        diffusion, name, reason = _pick_model(w, h, gray, model)
    used = "classical" if diffusion is None else ("ddim" if method == "auto" else method)

    def done(samples: list[Image.Image], used: str, name: str | None, reason: str | None,
             weight: float = 0.0) -> DenoiseResult:
        return DenoiseResult(samples[0], used, sig, estimated, name, reason, samples,
                             (time.perf_counter() - t0) * 1000.0, weight)

    if method == "auto" and diffusion is None and model is None:  # a photo: no shipped DDPM fits its size
        from lookalike.indexer.loading import to_rgb

        if sig > AUTO_FUSE_SIGMA:
            return done([to_rgb(image)], "lowfreq", None, f"{w}x{h} photo with noise {sig:.2f} > {AUTO_FUSE_SIGMA}: "
                        f"searched with the low-frequency channel fused (weight {AUTO_LOWFREQ_WEIGHT:g})",
                        AUTO_LOWFREQ_WEIGHT)
        return done([to_rgb(image)], "none", None, f"{w}x{h} photo with noise {sig:.2f} <= {AUTO_FUSE_SIGMA}: "
                    "searched as it is")

    arr, _ = _to_array(image)
    if sig < 0.005:  # below the first diffusion step's noise level: nothing to remove
        return done([_to_pil(arr)], "none", None, reason or "noise level ~0: image returned unchanged")
    if diffusion is None:
        src = arr[..., 0] if gray else arr
        return done([_to_pil(classical_denoise(src, sig))], "classical", None, reason)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    if diffusion.channels == 1:
        x = x[:, :1]
    g = torch.Generator().manual_seed(int(seed))
    with _threads(DENOISE_THREADS):
        out = _run_diffusion(diffusion, x, sig, used, n_samples, steps, g)
    samples = [_to_pil(o.permute(1, 2, 0).numpy()[..., 0] if diffusion.channels == 1 else o.permute(1, 2, 0).numpy())
               for o in out]
    return done(samples, used, name, None)


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


def consistency_score(neighbour_id_lists: list[list[int]]) -> float:
    """Agreement of the samples' nearest neighbours, 0..1: mean pairwise overlap of their top-k id lists."""
    lists = [list(x) for x in neighbour_id_lists]
    if len(lists) <= 1:
        return 1.0
    scores = []
    for a, b in itertools.combinations(lists, 2):
        k = max(len(a), len(b))
        scores.append(len(set(a) & set(b)) / k if k else 1.0)
    return float(np.mean(scores))
