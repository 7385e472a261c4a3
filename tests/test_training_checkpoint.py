"""Checkpoints: save/load round-trip gives identical embeddings; bad or foreign files give clear errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.cli import main
from lookalike.retrieval.embedders import EmbedderError, get_embedder
from lookalike.retrieval.checkpoint import read_checkpoint
from lookalike.retrieval.nets import CIFAR_PREPROCESS, HeadEmbedder, SiameseNet, load_checkpoint_embedder, save_embedder


def _images(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_siamese_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SiameseNet(dim=16, preprocess=CIFAR_PREPROCESS).eval()
    path = save_embedder(tmp_path / "m.pt", model, {"dataset": {"name": "CIFAR-10-sample"}, "command": "x"})
    ims = _images()
    loaded = get_embedder(f"checkpoint:{path}", cache=False)
    assert isinstance(loaded, SiameseNet) and loaded.dim == 16
    np.testing.assert_array_equal(model.embed_images(ims), loaded.embed_images(ims))
    ckpt = read_checkpoint(path)
    assert ckpt.kind == "siamese" and ckpt.metadata["dataset"]["name"] == "CIFAR-10-sample"
    # strictly weights-only loadable
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert json.loads(obj["metadata"])["preprocess"]["input_size"] == 32


def test_head_round_trip(tmp_path):
    torch.manual_seed(0)
    emb = HeadEmbedder(["efficientnet_lite0"], input_size=64, hidden=32, out_dim=8, output="hidden").eval()
    path = save_embedder(tmp_path / "h.pt", emb, {})
    assert path.stat().st_size < 1_000_000  # backbone weights are not copied
    loaded = load_checkpoint_embedder(path)
    assert isinstance(loaded, HeadEmbedder) and loaded.output == "hidden" and loaded.dim == 32
    ims = _images(4)
    np.testing.assert_array_equal(emb.embed_images(ims), loaded.embed_images(ims))


def test_bad_and_foreign_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EmbedderError, match="junk.pt"):
        get_embedder(f"checkpoint:{junk}", cache=False)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(EmbedderError, match="not a lookalike checkpoint"):
        get_embedder(f"checkpoint:{foreign}", cache=False)
    with pytest.raises(EmbedderError, match="not found"):
        get_embedder(f"checkpoint:{tmp_path / 'missing.pt'}", cache=False)
    # a lookalike checkpoint whose weights do not fit its architecture
    model = SiameseNet(dim=16, preprocess=CIFAR_PREPROCESS)
    path = save_embedder(tmp_path / "m.pt", model, {})
    obj = torch.load(path, weights_only=True)
    config = json.loads(obj["config"])
    config["dim"] = 32
    obj["config"] = json.dumps(config)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(EmbedderError, match="do not fit"):
        load_checkpoint_embedder(tmp_path / "bad.pt")


def test_cli_bad_input_exit_code(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nope")
    assert main(["eval", "--model", f"checkpoint:{junk}", "--dataset", "mnist-sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert "junk.pt" in err and len(err.splitlines()) == 1
    assert main(["train", "siamese", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o.pt")]) == 2
    assert "nope" in capsys.readouterr().err
