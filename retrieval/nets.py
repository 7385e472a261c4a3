"""The trained embedders' networks and their checkpoints: the Siamese CNN and a projection head on frozen backbones.

``get_embedder("checkpoint:PATH")`` and the shipped names (``siamese-mnist``, ``ntxent-cifar10``, ...) load through
:func:`load_checkpoint_embedder`; training writes them with :func:`save_embedder`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, read_checkpoint, restore, save_checkpoint
from .embedders import Embedder, EmbedderError, PreprocessConfig, get_embedder, resize_square

__all__ = ["SiameseNet", "MNIST_PREPROCESS", "CIFAR_PREPROCESS", "default_preprocess", "ProjectionHead",
           "FrozenBackbones", "HeadEmbedder", "save_embedder", "load_checkpoint_embedder"]

MNIST_PREPROCESS = PreprocessConfig(input_size=28, mean=(0.1307,), std=(0.3081,), interpolation="bilinear",
                                    grayscale=True)
CIFAR_PREPROCESS = PreprocessConfig(input_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                                    interpolation="bilinear")


def default_preprocess(grayscale: bool, input_size: int) -> PreprocessConfig:
    """MNIST statistics for grayscale inputs, CIFAR-10 statistics for colour, at ``input_size``."""
    base = MNIST_PREPROCESS if grayscale else CIFAR_PREPROCESS
    return PreprocessConfig.from_dict({**base.to_dict(), "input_size": int(input_size)})


class SiameseNet(Embedder):
    """Small CNN embedder trained from scratch; both branches of the Siamese pair share these weights."""

    channels_last = False

    def __init__(self, dim: int = 64, preprocess: PreprocessConfig = MNIST_PREPROCESS, hidden: int = 256,
                 channels: tuple[int, ...] = (32, 64, 128), name: str = "siamese") -> None:
        super().__init__()
        self.name = name
        self.dim = int(dim)
        self.hidden = int(hidden)
        self.channels = tuple(int(c) for c in channels)
        self.preprocess = preprocess
        in_ch = 1 if preprocess.grayscale else 3
        blocks: list[nn.Module] = []
        for out_ch in self.channels:
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        side = preprocess.input_size
        for _ in self.channels:
            side //= 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * side * side, self.hidden), nn.ReLU(inplace=True),
                                nn.Linear(self.hidden, self.dim))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(feats)

    def config(self) -> dict:
        """Constructor arguments, stored in checkpoints."""
        return {"dim": self.dim, "hidden": self.hidden, "channels": list(self.channels), "name": self.name,
                "preprocess": self.preprocess.to_dict()}

    @classmethod
    def from_config(cls, cfg: dict) -> "SiameseNet":
        return cls(dim=cfg["dim"], hidden=cfg.get("hidden", 256), channels=tuple(cfg.get("channels", (32, 64, 128))),
                   preprocess=PreprocessConfig.from_dict(cfg["preprocess"]), name=cfg.get("name", "siamese"))


class ProjectionHead(nn.Module):
    """SimCLR MLP head: Linear -> BatchNorm -> ReLU -> Linear. ``hidden`` is the pre-projection layer."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), int(hidden), int(out_dim)
        self.fc1 = nn.Linear(self.in_dim, self.hidden_dim)
        self.bn = nn.BatchNorm1d(self.hidden_dim)
        self.fc2 = nn.Linear(self.hidden_dim, self.out_dim)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-projection representation (after ReLU)."""
        return F.relu(self.bn(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.hidden(x))


class FrozenBackbones(nn.Module):
    """One or several registry backbones at one input size; output: concatenated unit-norm pooled features."""

    def __init__(self, names: list[str], input_size: int | None = None) -> None:
        super().__init__()
        if not names:
            raise EmbedderError("at least one backbone is needed")
        members = [get_embedder(n, input_size=input_size) if input_size else get_embedder(n) for n in names]
        self.names = list(names)
        self.members = nn.ModuleList(members)
        for p in self.parameters():
            p.requires_grad_(False)
        self.preprocess: PreprocessConfig = members[0].preprocess
        for m in members[1:]:
            if (m.preprocess.mean, m.preprocess.std) != (self.preprocess.mean, self.preprocess.std):
                raise EmbedderError(f"{m.name}: normalisation differs from {members[0].name}; cannot share one input")
        self.dim = sum(m.dim for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.normalize(m.forward_head(m.forward_features(resize_square(x, m.preprocess.input_size))).float(),
                                      dim=1) for m in self.members], dim=1)


class HeadEmbedder(Embedder):
    """Frozen backbone(s) + projection head. ``output`` picks the retrieval vector: ``hidden`` or ``projection``."""

    def __init__(self, backbones: list[str], input_size: int | None = None, hidden: int = 512, out_dim: int = 128,
                 output: str = "projection", name: str = "ntxent-head", in_dim: int | None = None,
                 load_backbones: bool = True) -> None:
        super().__init__()
        if output not in ("hidden", "projection"):
            raise EmbedderError(f"head output must be 'hidden' or 'projection', got '{output}'")
        self.name = name
        self.backbone_names = list(backbones)
        self.input_size = input_size
        self.output = output
        self.backbone = FrozenBackbones(backbones, input_size) if load_backbones else None
        feat_dim = self.backbone.dim if self.backbone is not None else int(in_dim or 0)
        self.head = ProjectionHead(feat_dim, hidden, out_dim)
        self.dim = hidden if output == "hidden" else out_dim
        if self.backbone is not None:
            self.preprocess = self.backbone.preprocess

    def train(self, mode: bool = True) -> "HeadEmbedder":
        super().train(mode)
        if self.backbone is not None:
            self.backbone.eval()  # frozen: BatchNorm statistics never change
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            raise EmbedderError(f"{self.name}: built without backbones (head only)")
        return self.backbone(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head.hidden(feats) if self.output == "hidden" else self.head(feats)

    def config(self) -> dict:
        """Constructor arguments, stored in checkpoints (backbone weights come from their packages)."""
        return {"backbones": self.backbone_names, "input_size": self.input_size, "hidden": self.head.hidden_dim,
                "out_dim": self.head.out_dim, "output": self.output, "name": self.name, "in_dim": self.head.in_dim}

    def head_state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.head.state_dict().items()}

    @classmethod
    def from_config(cls, cfg: dict, load_backbones: bool = True) -> "HeadEmbedder":
        return cls(backbones=list(cfg["backbones"]), input_size=cfg.get("input_size"), hidden=cfg["hidden"],
                   out_dim=cfg["out_dim"], output=cfg.get("output", "projection"), name=cfg.get("name", "ntxent-head"),
                   in_dim=cfg.get("in_dim"), load_backbones=load_backbones)


def save_embedder(path: str | os.PathLike, model: Embedder, metadata: dict | None = None) -> Path:
    """Write a Siamese or projection-head embedder (a head without its frozen backbones) with ``metadata``."""
    if isinstance(model, SiameseNet):
        kind, state = "siamese", model.state_dict()
    elif isinstance(model, HeadEmbedder):
        kind, state = "projection-head", model.head_state_dict()
    else:
        raise EmbedderError(f"cannot save a {type(model).__name__}: only Siamese and projection-head embedders")
    meta = {"preprocess": model.preprocess.to_dict(), "dim": int(model.dim), **(metadata or {})}
    return save_checkpoint(path, Checkpoint(kind, model.config(), meta, state))


def load_checkpoint_embedder(path: str | os.PathLike, name: str | None = None) -> Embedder:
    """Rebuild the embedder saved in ``path``; EmbedderError with a one-line reason when it cannot."""
    try:
        ckpt = read_checkpoint(path, kinds=("siamese", "projection-head"))
        if ckpt.kind == "siamese":
            model: Embedder = restore(ckpt, path, SiameseNet.from_config)
        else:
            model = restore(ckpt, path, HeadEmbedder.from_config, part=lambda m: m.head)
    except CheckpointError as exc:
        raise EmbedderError(str(exc)) from exc
    model.name = name or f"checkpoint:{path}"
    return model.eval()
