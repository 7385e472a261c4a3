"""Projection-head embedder: frozen pretrained backbone(s) from the registry, then a trainable MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.retrieval.embedders import Embedder, EmbedderError, PreprocessConfig, get_embedder

__all__ = ["ProjectionHead", "HeadEmbedder", "FrozenBackbones"]


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
        parts = []
        for m in self.members:
            size = m.preprocess.input_size
            xi = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear",
                                                             align_corners=False, antialias=True)
            parts.append(F.normalize(m.forward_head(m.forward_features(xi)).float(), dim=1))
        return torch.cat(parts, dim=1)


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
