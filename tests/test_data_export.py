"""Dataset export: real sample images written as PNG, one folder per class."""
from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.cli import main as cli
from lookalike.data.samples import load_sample
from helpers import needs_samples


@needs_samples
def test_export_cifar10_sample(tmp_path, capsys):
    assert cli(["data", "export", "cifar10", str(tmp_path / "c"), "--limit", "40", "-q"]) == 0
    assert "wrote 40 images" in capsys.readouterr().out
    files = sorted((tmp_path / "c").rglob("*.png"))
    assert len(files) == 40
    s = load_sample("cifar10", "train")
    first = files[0]
    idx = int(first.stem.split("-")[1])
    assert first.parent.name == s.classes[s.labels[idx]]
    assert np.array_equal(np.asarray(Image.open(first)), s.images[idx])


@needs_samples
def test_export_mnist_test_split(tmp_path):
    assert cli(["data", "export", "mnist", str(tmp_path / "m"), "--split", "test", "--limit", "25", "-q"]) == 0
    folders = {p.parent.name for p in (tmp_path / "m").rglob("*.png")}
    assert folders <= {str(i) for i in range(10)} and len(folders) > 3


def test_export_bad_source_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path / "nowhere"))
    assert cli(["data", "export", "mnist", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "mnist-5k.npz" in err and "LOOKALIKE_DATA" in err
