"""Pictures of results: a contact sheet of the query and its neighbours with scores."""
from __future__ import annotations

import os
from typing import Sequence

from PIL import Image

__all__ = ["contact_sheet"]


def contact_sheet(query: Image.Image, results: Sequence, out_path: str | os.PathLike, title: str | None = None,
                  thumb: int = 3) -> str:
    """Save query + result thumbnails (score and file name under each) as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lookalike.indexer.loading import ImageLoadError, load_image

    n = len(results) + 1
    fig, axes = plt.subplots(1, n, figsize=(thumb * n, thumb + 0.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(query)
    axes[0].set_title("query", fontsize=11, fontweight="bold")
    for ax, r in zip(axes[1:], results):
        try:
            im = load_image(r.path)
            im.thumbnail((512, 512))
            ax.imshow(im)
        except ImageLoadError as exc:
            ax.text(0.5, 0.5, exc.reason, ha="center", va="center", wrap=True, fontsize=8)
        name = os.path.basename(r.path)
        parent = os.path.basename(os.path.dirname(r.path))
        ax.set_title(f"#{r.rank}  {r.score:.3f}\n{parent}/{name}"[:60], fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    out_path = os.fspath(out_path)
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path
