"""The one checkpoint format: weights plus a kind, an architecture config and metadata, read with ``weights_only``.

A file is ``{"format": FORMAT, "version": VERSION, "kind": ..., "config": JSON, "metadata": JSON, "state_dict": ...}``.
``kind`` is one of :data:`KINDS`; ``config`` is what rebuilds the network (for denoisers also their image size and
channels); ``metadata`` is provenance (dataset, command, metrics). Files of the three earlier formats are read too.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import torch

from lookalike.errors import LookalikeError
from lookalike.fsutil import atomic_path

__all__ = ["FORMAT", "VERSION", "KINDS", "Checkpoint", "CheckpointError", "save_checkpoint", "read_checkpoint",
           "restore"]

FORMAT = "lookalike-checkpoint"
VERSION = 2
KINDS = ("siamese", "projection-head", "ddpm", "sigma-estimator")
_LEGACY_FORMATS = ("lookalike-embedder", "lookalike-ddpm", "lookalike-sigma-estimator")  # version 1, read only
M = TypeVar("M", bound=torch.nn.Module)


class CheckpointError(LookalikeError, ValueError):
    """A file that is not a usable lookalike checkpoint; the message is one line naming the file."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    kind: str                                   # one of KINDS
    config: dict                                # architecture: what rebuilds the network
    metadata: dict = field(default_factory=dict)  # provenance: dataset, command, metrics, ...
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (a killed run leaves the old file or none, never half a file)."""
    if ckpt.kind not in KINDS:
        raise CheckpointError(f"{path}: unknown checkpoint kind '{ckpt.kind}' (choose {', '.join(KINDS)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": FORMAT, "version": VERSION, "kind": ckpt.kind, "config": json.dumps(ckpt.config),
           "metadata": json.dumps(ckpt.metadata),
           "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def _reason(exc: Exception) -> str:
    """The specific cause in torch's multi-line load error, as one whole sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):  # boilerplate first, the cause further down
        lines = [ln for ln in lines[1:] if not ln.startswith(("Please file an issue", "Check the documentation"))]
    if len(lines) > 1 and lines[0].endswith(":"):  # "Error(s) in loading state_dict for X:" then the first error
        lines = [f"{lines[0]} {lines[1]}"]
    return lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__


def _legacy(obj: dict) -> tuple[str, dict, dict]:
    """(kind, config, metadata) of a file in one of the earlier formats (version 1)."""
    fmt = obj["format"]
    if fmt == "lookalike-embedder":
        meta = json.loads(obj["metadata"])
        arch = meta.pop("architecture")
        kind, config = arch["kind"], arch["config"]
    elif fmt == "lookalike-ddpm":
        meta = json.loads(obj["meta_json"])
        kind, config = "ddpm", {k: meta.pop(k) for k in ("unet", "schedule", "image_size", "channels")}
    else:  # lookalike-sigma-estimator
        meta = json.loads(obj["meta_json"])
        kind, config = "sigma-estimator", meta.pop("config")
    for k in ("format", "version"):
        meta.pop(k, None)
    return kind, config, meta



def read_checkpoint(path: str | os.PathLike, kinds: tuple[str, ...] = KINDS) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)``; CheckpointError unless it is one of ``kinds``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, truncated file, not a torch file at all
        raise CheckpointError(f"{p}: not a readable weights-only torch checkpoint ({_reason(exc)})") from exc
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt != FORMAT and fmt not in _LEGACY_FORMATS:
        raise CheckpointError(f"{p}: not a lookalike checkpoint (foreign torch file)")
    try:
        version = int(obj.get("version", 1))
    except (TypeError, ValueError):
        raise CheckpointError(f"{p}: damaged lookalike checkpoint (version {obj.get('version')!r})") from None
    if version > VERSION:
        raise CheckpointError(f"{p}: checkpoint version {version} is newer than this lookalike understands ({VERSION})")
    try:
        if fmt == FORMAT:
            kind, config, meta = obj["kind"], json.loads(obj["config"]), json.loads(obj["metadata"])
        else:
            kind, config, meta = _legacy(obj)
        state = obj["state_dict"]
        if not isinstance(config, dict) or not isinstance(meta, dict) or not isinstance(state, dict):
            raise TypeError("config, metadata and state_dict must be mappings")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{p}: damaged lookalike checkpoint (metadata: {exc})") from exc
    if kind not in kinds:
        raise CheckpointError(f"{p}: a '{kind}' checkpoint, not {' or '.join(repr(k) for k in kinds)}")
    return Checkpoint(kind, config, meta, state)


def restore(ckpt: Checkpoint, path: str | os.PathLike, build: Callable[[dict], M],
            part: Callable[[M], torch.nn.Module] | None = None) -> M:
    """``build(config)``, then the weights loaded strictly into it (or into ``part(model)``); CheckpointError if not."""
    try:
        model = build(ckpt.config)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a damaged config, a backbone not installed
        why = f"config has no {exc}" if isinstance(exc, KeyError) else _reason(exc)
        raise CheckpointError(f"{path}: cannot rebuild the '{ckpt.kind}' network ({why})") from exc
    try:
        (part(model) if part else model).load_state_dict(ckpt.state_dict, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the '{ckpt.kind}' architecture ({_reason(exc)})") from exc
    return model
