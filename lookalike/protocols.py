"""The interfaces the layers share: :class:`EmbedderLike`, what indexing and search need of an embedder (the torch
embedders of lookalike.retrieval.embedders and the compiled ones of lookalike.retrieval.runtime both are one)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:  # numpy and PIL only for the annotations: importing lookalike stays cheap
    import numpy as np
    from PIL import Image

__all__ = ["EmbedderLike", "PreprocessLike"]


@runtime_checkable
class PreprocessLike(Protocol):
    """An embedder's preprocessing: the square side it resizes to, and its settings as plain data."""

    @property
    def input_size(self) -> int: ...

    def to_dict(self) -> dict: ...


@runtime_checkable
class EmbedderLike(Protocol):
    """An embedder: RGB images in, (N, dim) float32 unit vectors out."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def preprocess(self) -> PreprocessLike: ...

    @property
    def transform_uint8(self) -> Callable[[Image.Image], Any]:
        """PIL RGB image -> resized CHW uint8 tensor (the indexing data loader's transform)."""
        ...

    def embed_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed PIL RGB images."""
        ...

    def embed_tensor(self, batch: Any) -> np.ndarray:
        """Embed a uint8 or float NCHW batch."""
        ...

    def describe(self) -> dict:
        """What an index folder records about this embedder (model, dim, preprocess)."""
        ...
