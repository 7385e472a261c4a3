"""Figures: loss curve per epoch and a 2-D t-SNE map of test embeddings coloured by class."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.fsutil import atomic_path

__all__ = ["plot_loss", "plot_tsne"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """Lay out, write atomically and close the figure."""
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def plot_loss(history: list[float], path: str | Path, title: str) -> Path:
    """Mean training loss per epoch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(np.arange(1, len(history) + 1), history, marker="o" if len(history) <= 30 else None, ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_tsne(emb: np.ndarray, labels: np.ndarray, classes: list[str], path: str | Path, title: str,
              seed: int = 0) -> Path:
    """t-SNE of the embeddings (fixed seed), one colour per class."""
    from sklearn.manifold import TSNE

    plt = _plt()
    perplexity = float(min(30, max(5, (len(emb) - 1) // 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=5, color=cmap(int(c) % cmap.N),
                   label=classes[int(c)] if int(c) < len(classes) else str(c))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if len(classes) > 5 else 1)
    return _save(plt, fig, path)
