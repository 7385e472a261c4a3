"""The model table: every card resolves to its weights, every embedder name is registered, denoisers are chosen by
their checkpoint's own image size and channels."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lookalike.retrieval import models
from lookalike.retrieval.checkpoint import read_checkpoint
from lookalike.retrieval.denoise import denoise_image, shipped_models
from lookalike.retrieval.denoise.diffusion import build_diffusion, save_diffusion
from lookalike.retrieval.embedders import get_embedder, list_embedders

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("card", models.MODELS, ids=lambda c: c.name)
def test_every_card_resolves(card):
    assert models.get_card(card.name) is card and all(models.get_card(a) is card for a in card.aliases)
    if card.package is not None:
        module, cls = card.package
        assert (card.kind, card.file) == ("backbone", None)
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
        assert path and os.path.isfile(path)
    else:
        ckpt = read_checkpoint(models.card_path(card))
        assert ckpt.kind == card.kind
    if card.kind in ("backbone", "siamese", "projection-head"):
        names = list_embedders()
        assert names[card.name] == card.description
        assert all(names[a] == card.description + " (alias)" for a in card.aliases)


def test_lookups():
    assert models.get_card("siamese-mnist").name == "siamese-triplet-mnist"
    assert models.get_card("no-such-model") is None
    assert [c.name for c in models.cards("ddpm")] == ["ddpm-mnist", "ddpm-cifar10", "ddpm-photo"]
    assert set(shipped_models()) == {"ddpm-mnist", "ddpm-cifar10", "ddpm-photo"}


@pytest.mark.slow
def test_alias_and_checkpoint_load_without_training_package():
    code = ("import sys; from lookalike.retrieval.embedders import get_embedder; from lookalike.retrieval.models import "
            "card_path, get_card; e = get_embedder('siamese-mnist'); assert e.name == 'siamese-mnist', e.name; "
            "c = get_embedder('checkpoint:' + str(card_path(get_card('ntxent-cifar10')))); assert c.dim == 512; "
            "assert not [m for m in sys.modules if m.startswith('lookalike.training')]")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_missing_shipped_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(ValueError) as e:
        get_embedder("siamese-mnist", cache=False)
    assert "siamese-mnist: model file" in str(e.value) and "missing" in str(e.value) and "\n" not in str(e.value)


def test_denoiser_chosen_by_its_metadata_not_its_file_name(monkeypatch, tmp_path):
    # swapped on purpose: the file named ddpm-cifar10.pt holds a 28x28 grayscale model and vice versa
    save_diffusion(build_diffusion(1, 28, base=8), tmp_path / "ddpm-cifar10.pt")
    save_diffusion(build_diffusion(3, 32, base=8), tmp_path / "ddpm-mnist.pt")
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).convert("RGB")
    colour = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert denoise_image(gray, sigma=0.3, steps=2).model == "ddpm-cifar10"
    assert denoise_image(colour, sigma=0.3, steps=2).model == "ddpm-mnist"
    res = denoise_image(colour.resize((40, 40)), method="ddim", sigma=0.3)
    assert res.method == "classical" and res.fallback_reason == (
        "40x40 colour image is outside every shipped DDPM's domain (ddpm-mnist: 32x32 colour, "
        "ddpm-cifar10: 28x28 grayscale)")


def test_default_embedder_is_the_shipped_edit_robust_head(capsys):
    """New indexes get ntxent-copies (docs/history/benchmarks-2026-11.md section 11); `lookalike models` marks it."""
    from lookalike.cli import main as cli

    card = models.get_card(models.DEFAULT_EMBEDDER)
    assert card is not None and card.name == "ntxent-copies" and card.kind == "projection-head"
    assert models.card_path(card).is_file() and card.name in models.shipped("projection-head")
    assert cli(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    marked = [ln.split()[0] for ln in lines if ln.endswith("(default)")]
    assert marked == ["ntxent-copies"]
