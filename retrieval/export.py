"""The shipped embedders as ONNX files, so that the core install (no torch) indexes and searches: exported at build
time from the checkpoints (``python -m lookalike.retrieval.export``, run by the wheel build through setup.py and by
``make models``) into ``weights/onnx/`` beside them, and found there by :mod:`~lookalike.retrieval.runtime`.

    weights/onnx/<name>.onnx   the network: a preprocessed NCHW float batch -> unit vectors (batch size free); for a
                               head on a shipped backbone (:data:`SHIPPED_HEADS`) only the head: the backbone's unit
                               vectors -> unit vectors, run after the backbone's own file (one copy of the backbone)
    weights/onnx/<name>.json   dim, preprocessing, the ONNX file's sha256, the export format, the sha256 of the
                               checkpoint it was exported from (a retrained checkpoint makes the file stale: unused)
                               and, for a head, the name of the backbone whose file it follows (``backbone``)
    weights/onnx/ddpm-sigma-estimator.onnx   the learned noise estimator (N,1,H,W) -> log sigma (N,), any size
    weights/onnx/denoise.json  its sha256s, and each shipped DDPM's domain (size, channels): what ``--denoise auto``
                               needs to treat a photo without torch (retrieval/denoise/light.py)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Callable

from lookalike.fsutil import atomic_path, atomic_write_text

from .models import MODELS_DIR, card_path, cards, get_card

__all__ = ["SHIPPED_ONNX", "SHIPPED_HEADS", "ONNX_DIR", "EXPORT_FORMAT", "export_onnx", "export_head_onnx",
           "shipped_onnx", "source_digest", "export_all", "export_denoise", "shipped_denoise"]

EXPORT_FORMAT = 1  # bump when the exported graph changes meaning
ONNX_DIR = MODELS_DIR / "onnx"
# what the core install runs without torch: the default model, its backbone, and the two small Siamese models
SHIPPED_ONNX = ("ntxent-copies", "efficientnet_lite0", "siamese-triplet-mnist", "siamese-triplet-cifar10")
# heads on a frozen shipped backbone at its own input size: shipped as the head alone (its input: the backbone's
# shipped unit vectors), so that the wheel carries the backbone once; the runtime runs backbone then head
SHIPPED_HEADS = {"ntxent-copies": "efficientnet_lite0"}


def _up_to_date(onnx: Path, meta_path: Path, sha_field: str, **expected) -> bool:
    """Whether ``onnx`` and its metadata were written by this export format from the same sources (``expected``
    metadata fields) and the file is the one recorded (its sha256 in ``sha_field``)."""
    try:
        old = json.loads(meta_path.read_text())
        return (old.get("format") == EXPORT_FORMAT and all(old.get(k) == v for k, v in expected.items())
                and _sha256(onnx) == old[sha_field])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digest(name: str, hasher: Callable[[Path], str] = _sha256) -> str | None:
    """The sha256 of the checkpoint a shipped name is built from (None: a packaged backbone, or no such card)."""
    card = get_card(name)
    if card is None or card.file is None:
        return None
    path = card_path(card)
    return hasher(path) if path.is_file() else "missing"


def _denoise_sources() -> dict[str, str]:
    """sha256 of the noise estimator's and every shipped DDPM's checkpoint, by name."""
    return {c.name: source_digest(c.name) for c in cards("sigma-estimator", "ddpm") if card_path(c).is_file()}


def export_denoise(out: Path = ONNX_DIR, force: bool = False, log=print) -> list[Path]:
    """Export the noise estimator to ONNX and record the shipped DDPMs' domains (``denoise.json``), unless they are
    already there from the same checkpoints. Needs torch."""
    onnx, meta_path = out / "ddpm-sigma-estimator.onnx", out / "denoise.json"
    sources = _denoise_sources()
    if _up_to_date(onnx, meta_path, "sigma_onnx_sha256", sources=sources) and not force:
        return [onnx, meta_path]
    import torch

    from .denoise.diffusion import load_diffusion
    from .denoise.sigma import load_sigma_net

    net = load_sigma_net(card_path(cards("sigma-estimator")[0]))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(2, 1, 64, 48),), buf, dynamo=False, input_names=["x"],
                          output_names=["log_sigma"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"},
                                                                    "log_sigma": {0: "n"}}, opset_version=18)
    domains = {}
    for c in cards("ddpm"):
        if card_path(c).is_file():
            d = load_diffusion(card_path(c))
            domains[c.name] = {"image_size": None if d.any_size else int(d.image_size), "channels": int(d.channels)}
    out.mkdir(parents=True, exist_ok=True)
    data = buf.getvalue()
    with atomic_path(onnx) as tmp:
        Path(tmp).write_bytes(data)
    atomic_write_text(meta_path, json.dumps({"format": EXPORT_FORMAT, "sources": sources, "ddpm": domains,
                                             "sigma_onnx_sha256": hashlib.sha256(data).hexdigest()}, indent=1))
    log(f"lookalike: exported the noise estimator to {onnx} and the denoisers' domains to {meta_path}")
    return [onnx, meta_path]


_DENOISE: list = []


def shipped_denoise() -> tuple[Path, dict] | None:
    """The shipped noise estimator's ONNX file and ``denoise.json`` when whole and from the checkpoints on disk now;
    else None. Checked once per process."""
    if not _DENOISE:
        found = None
        onnx, meta_path = ONNX_DIR / "ddpm-sigma-estimator.onnx", ONNX_DIR / "denoise.json"
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("format") == EXPORT_FORMAT and meta.get("sources") == _denoise_sources()
                    and hashlib.sha256(onnx.read_bytes()).hexdigest() == meta["sigma_onnx_sha256"]):
                found = (onnx, meta)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        _DENOISE.append(found)
    return _DENOISE[0]


def export_onnx(name: str) -> tuple[bytes, dict]:
    """Export the torch embedder ``name`` to ONNX (batch size free): the file's bytes and what it is. Needs torch;
    an operator the exporter lacks raises RuntimeError with a one-line reason."""
    import torch

    from .embedders import get_embedder

    emb = get_embedder(name)
    p = emb.preprocess
    x = torch.zeros(2, 1 if p.grayscale else 3, p.input_size, p.input_size)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(emb.eval(), (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=18)
    except Exception as exc:
        raise RuntimeError(f"{name}: cannot export to ONNX ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:160]})") from None
    data = buf.getvalue()
    return data, {**emb.describe(), "onnx_sha256": hashlib.sha256(data).hexdigest(), "format": EXPORT_FORMAT}


def export_head_onnx(name: str, backbone: str) -> tuple[bytes, dict]:
    """Export only the head of the projection-head embedder ``name`` on the frozen ``backbone`` (batch size free):
    the graph maps ``backbone``'s unit vectors (its own export's output) to ``name``'s vectors, so that backbone then
    head computes what :func:`export_onnx` of ``name`` does. Needs torch; RuntimeError when ``name`` is not a head
    on ``backbone`` alone at ``backbone``'s preprocessing."""
    import torch
    import torch.nn.functional as F

    from .embedders import get_embedder
    from .nets import HeadEmbedder

    emb, base = get_embedder(name), get_embedder(backbone)
    if not (isinstance(emb, HeadEmbedder) and emb.backbone is not None and emb.backbone.names == [backbone]
            and emb.backbone.preprocess == base.preprocess == emb.preprocess):
        raise RuntimeError(f"{name}: not a head on {backbone} alone at its input size; cannot ship it as a head")

    class Head(torch.nn.Module):
        """The head part of ``HeadEmbedder.forward``: its input is already ``FrozenBackbones``' output (one
        backbone: that backbone's unit vector, the backbone embedder's output)."""

        def __init__(self) -> None:
            super().__init__()
            self.emb = emb

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.emb.forward_head(z).float(), dim=1)

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Head().eval(), (torch.zeros(2, base.dim),), buf, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=18)
    data = buf.getvalue()
    return data, {**emb.describe(), "onnx_sha256": hashlib.sha256(data).hexdigest(), "format": EXPORT_FORMAT,
                  "backbone": backbone}


_SHIPPED: dict[str, tuple[Path, dict] | None] = {}


def shipped_onnx(name: str, hasher: Callable[[Path], str] = _sha256) -> tuple[Path, dict] | None:
    """The shipped ONNX file of ``name`` (an alias counts) and its meta, when it is there, whole, of this export
    format and exported from the checkpoint on disk now; else None. Checked once per process; ``hasher`` gives a
    file's sha256 (the runtime's remembers them by size and time, so a start-up reads no model file twice).

    For a head shipped on its backbone (:data:`SHIPPED_HEADS`) the file is the head alone, and the meta adds the
    backbone's file and sha256 (``backbone_onnx``, ``backbone_onnx_sha256``): None unless both files are good."""
    card = get_card(name)
    base = card.name if card is not None else name
    if base not in SHIPPED_ONNX:
        return None
    if base not in _SHIPPED:
        found = None
        onnx, meta_path = ONNX_DIR / f"{base}.onnx", ONNX_DIR / f"{base}.json"
        try:
            meta = json.loads(meta_path.read_text())
            backbone = SHIPPED_HEADS.get(base)
            if (meta.get("format") == EXPORT_FORMAT and meta.get("source_sha256") == source_digest(base, hasher)
                    and meta.get("backbone") == backbone and hasher(onnx) == meta["onnx_sha256"]):
                if backbone is None:
                    found = (onnx, meta)
                elif (under := shipped_onnx(backbone, hasher)) is not None and under[1]["preprocess"] == meta["preprocess"]:
                    found = (onnx, {**meta, "backbone_onnx": str(under[0]),
                                    "backbone_onnx_sha256": under[1]["onnx_sha256"]})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        _SHIPPED[base] = found
    hit = _SHIPPED[base]
    return None if hit is None else (hit[0], {**hit[1], "model": name})


def export_all(out: Path = ONNX_DIR, names: tuple[str, ...] = SHIPPED_ONNX, force: bool = False,
               log=print) -> list[Path]:
    """Write each of ``names`` to ``out`` (skipping those already exported from the same checkpoint), with the
    backbone of each head among them (:data:`SHIPPED_HEADS`: the head alone is written); returns the files written
    or kept."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with_backbones = [n for asked in names for n in (SHIPPED_HEADS.get(asked), asked) if n is not None]
    for name in dict.fromkeys(with_backbones):
        onnx, meta_path = out / f"{name}.onnx", out / f"{name}.json"
        source, backbone = source_digest(name), SHIPPED_HEADS.get(name)
        if force or not _up_to_date(onnx, meta_path, "onnx_sha256", source_sha256=source, backbone=backbone):
            data, meta = export_head_onnx(name, backbone) if backbone is not None else export_onnx(name)
            with atomic_path(onnx) as tmp:
                Path(tmp).write_bytes(data)
            atomic_write_text(meta_path, json.dumps({**meta, "source_sha256": source}, indent=1))
            log(f"lookalike: exported {name} to {onnx} ({len(data) / 2**20:.1f} MB)")
        done += [onnx, meta_path]
    return done + export_denoise(out, force=force, log=log)


def main(argv: list[str] | None = None) -> int:
    """``python -m lookalike.retrieval.export [--out DIR] [--force]``: the build step that writes the ONNX files."""
    ap = argparse.ArgumentParser(prog="python -m lookalike.retrieval.export", description=main.__doc__)
    ap.add_argument("--out", type=Path, default=ONNX_DIR)
    ap.add_argument("--force", action="store_true", help="export again even when the files are up to date")
    args = ap.parse_args(argv)
    try:
        export_all(args.out, force=args.force)
    except ImportError as exc:
        print(f"lookalike: exporting the models needs torch and timm ({exc}); pip install 'lookalike[train]'",
              file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
