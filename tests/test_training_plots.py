"""Training figures are written whole (atomically) as real PNGs."""
import numpy as np
from PIL import Image

from lookalike.training.plots import plot_loss, plot_tsne


def test_loss_and_tsne_pngs(tmp_path):
    loss = plot_loss([3.0, 2.0, 1.5], tmp_path / "loss.png", "loss")
    emb = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    tsne = plot_tsne(emb, np.arange(60) % 3, ["a", "b", "c"], tmp_path / "tsne.png", "t-SNE")
    for p in (loss, tsne):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100
    assert sorted(f.name for f in tmp_path.iterdir()) == ["loss.png", "tsne.png"]  # no temp file left
