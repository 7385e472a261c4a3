"""Checkpoints: a ``state_dict`` plus JSON metadata, read with ``torch.load(weights_only=True)``.

``get_embedder("checkpoint:PATH")`` finds :func:`load_checkpoint` through ``register_checkpoint_loader``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lookalike.retrieval.embedders import Embedder, EmbedderError, register_checkpoint_loader

from .heads import HeadEmbedder
from .siamese import SiameseNet

__all__ = ["FORMAT", "save_checkpoint", "read_checkpoint", "load_checkpoint", "checkpoint_metadata"]

FORMAT = "lookalike-embedder"
VERSION = 1


def _architecture(model: Embedder) -> tuple[str, dict, dict]:
    if isinstance(model, SiameseNet):
        return "siamese", model.config(), model.state_dict()
    if isinstance(model, HeadEmbedder):
        return "projection-head", model.config(), model.head_state_dict()
    raise EmbedderError(f"cannot save a {type(model).__name__}: only Siamese and projection-head embedders")


def save_checkpoint(path: str | os.PathLike, model: Embedder, metadata: dict | None = None) -> Path:
    """Write weights and metadata (architecture, preprocessing, dataset, command line, metrics) to ``path``."""
    kind, cfg, state = _architecture(model)
    meta = {"format": FORMAT, "version": VERSION, "architecture": {"kind": kind, "config": cfg},
            "preprocess": model.preprocess.to_dict(), "dim": int(model.dim), **(metadata or {})}
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION,
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in state.items()},
                "metadata": json.dumps(meta)}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict] | None:
    """(state_dict, metadata) of a lookalike checkpoint; None for a foreign torch file; EmbedderError if unreadable."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, truncated file, not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbedderError(f"{path}: not a readable weights-only torch checkpoint ({first[:160]})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        return None
    if int(obj.get("version", 0)) > VERSION:
        raise EmbedderError(f"{path}: checkpoint version {obj.get('version')} is newer than this lookalike "
                            f"understands ({VERSION})")
    try:
        meta = json.loads(obj["metadata"])
        state = obj["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbedderError(f"{path}: damaged lookalike checkpoint (metadata: {exc})") from exc
    return state, meta


def checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a lookalike checkpoint."""
    got = read_checkpoint(path)
    if got is None:
        raise EmbedderError(f"{path}: not a lookalike checkpoint (foreign torch file)")
    return got[1]


def load_checkpoint(path: str | os.PathLike, name: str | None = None) -> Embedder | None:
    """Rebuild the embedder saved in ``path``; None when the file is another program's torch file."""
    got = read_checkpoint(path)
    if got is None:
        return None
    state, meta = got
    arch = meta.get("architecture") or {}
    kind, cfg = arch.get("kind"), arch.get("config") or {}
    try:
        if kind == "siamese":
            model: Embedder = SiameseNet.from_config(cfg)
            model.load_state_dict(state, strict=True)
        elif kind == "projection-head":
            model = HeadEmbedder.from_config(cfg)
            model.head.load_state_dict(state, strict=True)
        else:
            raise EmbedderError(f"{path}: unknown architecture '{kind}' in checkpoint metadata")
    except EmbedderError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise EmbedderError(f"{path}: weights do not fit the '{kind}' architecture ({first[:200]})") from exc
    model.name = name or f"checkpoint:{path}"
    model.eval()
    return model


@register_checkpoint_loader
def _loader(path: str) -> Embedder | None:
    return load_checkpoint(path)
