"""Retrieval-accuracy benchmark: pretrained backbones vs the embedders trained by ``lookalike train``.

Test images are the queries, train images the gallery; figures come from ``lookalike.retrieval.metrics``.
Run from the project root::

    .venv/bin/python -m benchmarks.retrieval [--datasets mnist-sample,cifar10-sample] [--plot docs/retrieval-benchmark.png]

Frozen-backbone rows reuse the on-disk feature cache of ``lookalike.training.feature_cache`` (the same
features the embedder computes); every other row runs the registered embedder on the images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from lookalike.retrieval.checkpoint import CheckpointError, read_checkpoint
from lookalike.retrieval.embedders import EmbedderError, get_embedder
from lookalike.retrieval.metrics import retrieval_metrics
from lookalike.retrieval.models import card_path, get_card
from lookalike.retrieval.nets import HeadEmbedder
from lookalike.training.datasets import load_images
from lookalike.training.feature_cache import clean_features


# row label -> {dataset: embedder spec}; "bb:" = frozen backbone(s) at native size, via the feature cache
# "bb:NAME@SIZE,..." = frozen backbone(s) at that input size, computed through the feature cache
_E128 = "bb:efficientnet_lite0@128,efficientnet_lite1@128,efficientnet_lite2@128"
ROWS: list[tuple[str, dict[str, str]]] = [
    ("raw pixels", {"mnist-sample": "pixels-gray", "cifar10-sample": "pixels"}),
    ("pretrained efficientnet_lite0 (224 px, default)", {"mnist-sample": "bb:efficientnet_lite0@224",
                                                         "cifar10-sample": "bb:efficientnet_lite0@224"}),
    ("pretrained efficientnet_lite0 (128 px)", {"mnist-sample": "bb:efficientnet_lite0@128",
                                                "cifar10-sample": "bb:efficientnet_lite0@128"}),
    ("pretrained ensemble lite0+1+2 (128 px)", {"mnist-sample": _E128, "cifar10-sample": _E128}),
    ("Siamese contrastive", {"mnist-sample": "siamese-contrastive-mnist", "cifar10-sample": "siamese-contrastive-cifar10"}),
    ("Siamese triplet (semi-hard)", {"mnist-sample": "siamese-triplet-mnist", "cifar10-sample": "siamese-triplet-cifar10"}),
    ("NT-Xent head (lite0, 224 px)", {"cifar10-sample": "ntxent-cifar10"}),
    ("NT-Xent ensemble head (lite0+1+2, 128 px)", {"cifar10-sample": "ntxent-ensemble-cifar10"}),
    ("supervised SupCon head (lite0, 224 px)", {"cifar10-sample": "supcon-cifar10"}),
]
DISPLAY = {"mnist-sample": "MNIST-sample", "cifar10-sample": "CIFAR-10-sample"}


def _embed(spec: str, train, test) -> tuple[np.ndarray, np.ndarray]:
    if spec.startswith("bb:"):
        parts = [p.split("@") for p in spec[3:].split(",")]
        g = np.concatenate([clean_features([n], int(sz), train) for n, sz in parts], axis=1)
        q = np.concatenate([clean_features([n], int(sz), test) for n, sz in parts], axis=1)
        return q, g
    model = get_embedder(spec)
    if isinstance(model, HeadEmbedder):  # frozen backbone part from the feature cache, then the head
        def run(data):
            f = torch.from_numpy(clean_features(model.backbone_names, model.input_size, data))
            with torch.inference_mode():
                return torch.nn.functional.normalize(model.forward_head(f), dim=1).numpy()
        return run(test), run(train)
    return model.embed_images(test.images, batch_size=128), model.embed_images(train.images, batch_size=128)


def _train_time(spec: str) -> str:
    if spec.startswith("bb:") or spec.startswith("pixels"):
        return "-"
    try:
        meta = read_checkpoint(card_path(get_card(spec))).metadata
        return f"{meta['wall_s'] / 60:.1f} min"
    except (CheckpointError, KeyError, OSError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist-sample,cifar10-sample")
    ap.add_argument("--skip", default="", help="comma-separated row labels (substring) to leave out")
    ap.add_argument("--plot", default="docs/retrieval-benchmark.png")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--mnist-backbones", nargs="?", const="pretrained", default="",
                    help="also run the pretrained-backbone rows on MNIST-sample (5000 images; slow on 2 cores); "
                         "optionally only the rows whose label contains one of these comma-separated substrings")
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    mnist_bb = [s.strip() for s in args.mnist_backbones.split(",") if s.strip()]
    data = {d: (load_images(d, "train"), load_images(d, "test")) for d in datasets}
    results: dict[str, dict[str, dict]] = {}
    for label, specs in ROWS:
        if any(s in label for s in skip):
            continue
        results[label] = {}
        for d in datasets:
            spec = specs.get(d)
            if spec is None or (spec.startswith("bb:") and d.startswith("mnist")
                                and not any(s in label for s in mnist_bb)):
                continue
            t0 = time.perf_counter()
            try:
                q, g = _embed(spec, *data[d])
            except EmbedderError as exc:
                print(f"[skip] {label} on {DISPLAY[d]}: {exc}", file=sys.stderr)
                continue
            m = retrieval_metrics(q, data[d][1].labels, g, data[d][0].labels)
            results[label][d] = {**m.to_dict(), "model": spec, "train_time": _train_time(spec),
                                 "embed_s": round(time.perf_counter() - t0, 1)}
            print(f"{label:<48} {DISPLAY[d]:<16} {m}", file=sys.stderr, flush=True)
    head = "| embedder | " + " | ".join(f"{DISPLAY[d]} mAP@R | P@1 | P@10 | train time" for d in datasets) + " |"
    print(head)
    print("|" + "---|" * (1 + 4 * len(datasets)))
    for label, per in results.items():
        cells = []
        for d in datasets:
            r = per.get(d)
            cells += ([f"{r['map_at_r']:.3f}", f"{r['p_at_1']:.3f}", f"{r['p_at_10']:.3f}", r["train_time"]]
                      if r else ["n/a"] * 4)
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = list(results)
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.4), dpi=90)
        y = np.arange(len(labels))
        h = 0.8 / max(1, len(datasets))
        for i, d in enumerate(datasets):
            vals = [results[lab].get(d, {}).get("map_at_r", np.nan) for lab in labels]
            ax.barh(y + i * h, vals, height=h, label=f"{DISPLAY[d]} (test vs train)")
            for yy, v in zip(y + i * h, vals):
                if not np.isnan(v):
                    ax.text(v + 0.005, yy, f"{v:.3f}", va="center", fontsize=7)
        ax.set_yticks(y + h * (len(datasets) - 1) / 2)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mAP@R")
        ax.set_xlim(0, 1.08)
        ax.set_title("Retrieval accuracy, " + " and ".join(DISPLAY[d] for d in datasets), fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot)
        plt.close(fig)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
