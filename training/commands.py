"""CLI: ``lookalike train siamese``, ``lookalike train ntxent`` and ``lookalike eval``."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from lookalike.argtypes import add_runtime_options, fail, nonneg_int, positive_float, positive_int

__all__ = ["add_commands"]


def _command_line() -> str:
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name in ("lookalike", "__main__.py", "cli.py") else sys.argv
    return "lookalike " + " ".join(shlex.quote(a) for a in argv)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="mnist | cifar10 | an image folder (labelled by sub-folder)")
    p.add_argument("--source", choices=["sample", "torchvision"], default="sample",
                   help="mnist/cifar10: the shared offline sample (default) or torchvision's full set")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--plot", action="store_true", help="also write OUT-loss.png and OUT-tsne.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")


def add_commands(subparsers, train_subparsers, bench_subparsers=None) -> None:
    """Register ``train siamese``, ``train ntxent`` and ``eval``."""
    s = train_subparsers.add_parser("siamese", help="train a Siamese CNN from scratch (contrastive or triplet loss)")
    _add_common(s)
    s.add_argument("--loss", choices=["contrastive", "triplet"], default="contrastive")
    s.add_argument("--mining", choices=["batch-hard", "semi-hard"], default="batch-hard", help="triplet mining")
    s.add_argument("--margin", type=positive_float, help="default 1.0 (contrastive), 0.2 (triplet)")
    s.add_argument("--dim", type=positive_int, default=64, help="embedding size (default 64)")
    s.add_argument("--batch-size", type=positive_int, default=128, help="pairs per batch (contrastive)")
    s.add_argument("--pk", default="10x16", help="triplet batches: P classes x K images (default 10x16)")
    s.set_defaults(func=_train_siamese)

    n = train_subparsers.add_parser("ntxent", help="train an NT-Xent (or SupCon) projection head on frozen backbone(s)")
    _add_common(n)
    n.add_argument("--backbone", default="efficientnet_lite0", help="one or several registry names, comma-separated")
    n.add_argument("--input-size", type=positive_int,
                   help="backbone input size (default: 128 for images of 64 px or less, else the backbone's own)")
    n.add_argument("--views", type=positive_int, default=8, help="augmented views cached per image (default 8)")
    n.add_argument("--temperature", type=positive_float, default=0.05)
    n.add_argument("--supervised", action="store_true", help="SupCon: same-class images are positives (needs labels)")
    n.add_argument("--hidden", type=positive_int, default=512)
    n.add_argument("--out-dim", type=positive_int, default=128)
    n.add_argument("--batch-size", type=positive_int, default=256)
    n.add_argument("--output", choices=["auto", "hidden", "projection"], default="auto",
                   help="retrieval vector: pre-projection hidden layer or projection (auto: better on train images)")
    n.set_defaults(func=_train_ntxent)

    e = subparsers.add_parser("eval", help="retrieval accuracy of an embedder: test images queried against train")
    e.add_argument("--model", required=True, help="registered name or checkpoint:PATH")
    e.add_argument("--dataset", required=True, help="mnist-sample | cifar10-sample | mnist | cifar10 | DIR")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--batch-size", type=positive_int, default=64)
    add_runtime_options(e)
    e.set_defaults(func=_eval)


def _load_splits(spec: str, source: str | None):
    from .datasets import load_images

    train = load_images(spec, "train", source=source)
    test = load_images(spec, "test", source=source)
    return train, test


def _save(args, model, result, train, kind: str) -> None:
    from lookalike.retrieval.nets import save_embedder

    meta = {"kind": kind, "dataset": {"name": train.name, "spec": args.dataset, "source": args.source,
                                      "classes": train.classes, "n_train": len(train)},
            "command": _command_line(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seed": args.seed,
            **result.to_dict()}
    save_embedder(args.out, model, meta)


def _report(result, kind: str, out: str) -> None:
    if result.metrics_untrained is not None:
        print(f"before training: {result.metrics_untrained}")
    print(f"after training:  {result.metrics}")
    print(f"{kind}: wall time {result.wall_s:.1f} s; wrote {out}")


def _plots(args, history, emb, labels, classes, title: str) -> None:
    from .plots import plot_loss, plot_tsne

    stem = str(Path(args.out).with_suffix(""))
    plot_loss(history, stem + "-loss.png", f"{title}: training loss")
    print(f"wrote {stem}-loss.png")
    if emb is not None and labels is not None:
        plot_tsne(emb, labels, classes, stem + "-tsne.png", f"{title}: t-SNE of test embeddings", seed=args.seed)
        print(f"wrote {stem}-tsne.png")


def _guard(fn):
    def run(args) -> int:
        from lookalike.data.samples import DataError
        from lookalike.retrieval.embedders import EmbedderError

        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        try:
            return fn(args)
        except (DataError, EmbedderError, ValueError) as exc:
            return fail(str(exc).splitlines()[0])
        except OSError as exc:
            return fail(f"{getattr(exc, 'filename', None) or args.out}: {exc.strerror or exc}")
    run.__name__ = fn.__name__
    return run


@_guard
def _train_siamese(args) -> int:
    from .trainer import SiameseConfig, embed_tensors, train_siamese

    try:
        p, k = (int(x) for x in args.pk.lower().split("x"))
    except ValueError:
        return fail(f"--pk: expected PxK such as 10x16, got '{args.pk}'")
    train, test = _load_splits(args.dataset, args.source)
    cfg = SiameseConfig(loss=args.loss, mining=args.mining, margin=args.margin, epochs=args.epochs or 10,
                        dim=args.dim, batch_size=args.batch_size, p=p, k=k, lr=args.lr or 1e-3, seed=args.seed)
    model, result = train_siamese(cfg, train, test, progress=not args.quiet)
    kind = f"siamese-{args.loss}" + (f" ({args.mining})" if args.loss == "triplet" else "")
    _save(args, model, result, train, kind)
    _report(result, kind, args.out)
    if args.plot:
        import torch

        x = torch.stack([model.transform(im) for im in test.images])
        _plots(args, result.history, embed_tensors(model, x), test.labels, test.classes,
               f"{test.name}, {kind}")
    return 0


@_guard
def _train_ntxent(args) -> int:
    import torch

    from .feature_cache import clean_features
    from .trainer import HeadConfig, train_head

    backbones = [b.strip() for b in args.backbone.split(",") if b.strip()]
    if not backbones:
        return fail("--backbone: no backbone name given")
    train, test = _load_splits(args.dataset, args.source)
    size = args.input_size or (128 if max(train.images[0].size) <= 64 else None)
    cfg = HeadConfig(backbones=backbones, input_size=size, views=args.views, temperature=args.temperature,
                     supervised=args.supervised, epochs=args.epochs or 100, batch_size=args.batch_size,
                     hidden=args.hidden, out_dim=args.out_dim, lr=args.lr or 1e-3, output=args.output, seed=args.seed)
    model, result = train_head(cfg, train, test, progress=not args.quiet)
    kind = ("supcon" if args.supervised else "ntxent") + "-head"
    _save(args, model, result, train, kind)
    print(f"retrieval vector: {result.extra['output']} layer ({model.dim}-d)")
    _report(result, kind, args.out)
    if args.plot:
        with torch.inference_mode():
            f = torch.from_numpy(clean_features(backbones, size, test, progress=False))
            emb = model.forward_head(f).numpy()
        _plots(args, result.history, emb, test.labels, test.classes,
               f"{test.name}, {kind} on {'+'.join(backbones)}")
    return 0


@_guard
def _eval(args) -> int:
    from lookalike.retrieval.metrics import retrieval_metrics
    from lookalike.retrieval.runtime import load_embedder

    from .datasets import load_images

    model = load_embedder(args.model, args.runtime, args.precision or "fp32")
    train = load_images(args.dataset, "train")
    test = load_images(args.dataset, "test")
    if train.labels is None or test.labels is None:
        return fail(f"--dataset {args.dataset}: eval needs labelled images (one sub-folder per class)")
    t0 = time.perf_counter()
    g = model.embed_images(train.images, batch_size=args.batch_size)
    q = model.embed_images(test.images, batch_size=args.batch_size)
    m = retrieval_metrics(q, test.labels, g, train.labels)
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.to_dict().items()}))
    else:
        print(f"{args.model} on {test.name} ({m.n_queries} test queries, {m.n_gallery} train gallery, "
              f"{wall:.1f} s)")
        print(f"  mAP@R        {m.map_at_r:.4f}")
        print(f"  mAP@all      {m.map:.4f}")
        print(f"  precision@1  {m.p_at_1:.4f}")
        print(f"  precision@10 {m.p_at_10:.4f}")
    return 0
