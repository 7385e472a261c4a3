"""The from-scratch Siamese CNN: three conv blocks (32/64/128) then fully connected layers to the embedding."""
from __future__ import annotations

import torch
from torch import nn

from lookalike.retrieval.embedders import Embedder, PreprocessConfig

__all__ = ["SiameseNet", "MNIST_PREPROCESS", "CIFAR_PREPROCESS", "default_preprocess"]

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
