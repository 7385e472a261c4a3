"""Shipped models under ``models/``, registered as embedder names (``get_embedder("siamese-mnist")``)."""
from __future__ import annotations

from pathlib import Path

import lookalike.training
from lookalike.retrieval.embedders import Embedder, EmbedderError, register_embedder

from .checkpoint import load_checkpoint

__all__ = ["MODELS_DIR", "SHIPPED", "shipped_path"]

MODELS_DIR = Path(lookalike.training.__file__).resolve().parent.parent / "models"

# name -> (file, description)
SHIPPED: dict[str, tuple[str, str]] = {
    "siamese-contrastive-mnist": ("siamese-contrastive-mnist.pt", "Siamese CNN, contrastive loss, MNIST-sample (64-d)"),
    "siamese-triplet-mnist": ("siamese-triplet-mnist.pt", "Siamese CNN, triplet loss (semi-hard), MNIST-sample (64-d)"),
    "siamese-contrastive-cifar10": ("siamese-contrastive-cifar10.pt", "Siamese CNN, contrastive loss, CIFAR-10-sample"),
    "siamese-triplet-cifar10": ("siamese-triplet-cifar10.pt", "Siamese CNN, triplet loss, CIFAR-10-sample"),
    "ntxent-cifar10": ("ntxent-lite0-cifar10.pt", "NT-Xent head on frozen efficientnet_lite0 (224 px), CIFAR-10-sample"),
    "ntxent-ensemble-cifar10": ("ntxent-ensemble-cifar10.pt",
                                "NT-Xent head on frozen efficientnet_lite0+1+2 (128 px), CIFAR-10-sample"),
    "supcon-cifar10": ("supcon-lite0-cifar10.pt",
                       "SupCon (supervised) head on frozen efficientnet_lite0 (224 px), CIFAR-10-sample"),
}
# short aliases: the best Siamese loss per dataset (see models/README.md)
ALIASES: dict[str, str] = {"siamese-mnist": "siamese-triplet-mnist", "siamese-cifar10": "siamese-triplet-cifar10"}


def shipped_path(name: str) -> Path:
    """File behind a shipped model name."""
    name = ALIASES.get(name, name)
    if name not in SHIPPED:
        raise EmbedderError(f"unknown shipped model '{name}' (choose {', '.join(sorted(SHIPPED))})")
    return MODELS_DIR / SHIPPED[name][0]


def _factory(name: str):
    def factory() -> Embedder:
        path = shipped_path(name)
        if not path.is_file():
            raise EmbedderError(f"{name}: model file {path} is missing (see models/README.md for the command "
                                f"that trains it)")
        model = load_checkpoint(path, name=name)
        if model is None:
            raise EmbedderError(f"{name}: {path} is not a lookalike checkpoint")
        return model

    factory.__doc__ = SHIPPED[ALIASES.get(name, name)][1]
    return factory


for _name in list(SHIPPED) + list(ALIASES):
    register_embedder(_name, SHIPPED[ALIASES.get(_name, _name)][1] + (" (alias)" if _name in ALIASES else ""))(
        _factory(_name))
