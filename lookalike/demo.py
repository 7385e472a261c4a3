"""`make demo`: export real sample images, index them, search with a photo, save a contact sheet (offline)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lookalike.argtypes import positive_int
from lookalike.data.photos import unseen_query


def build_demo_images(out: Path, per_dataset: int = 150) -> int:
    """Fill ``out`` with CIFAR-10 and MNIST sample images plus scikit-image photos; returns the count."""
    from lookalike.data.export import export_dataset
    from lookalike.data.photos import write_photos
    from lookalike.data.samples import DataError

    n = len(write_photos(out / "photos"))
    for name in ("cifar10", "mnist"):
        try:
            n += len(export_dataset(name, out / name, split="train", limit=per_dataset, progress=False))
        except DataError as exc:
            print(f"demo: {exc}; continuing with the photos only", file=sys.stderr)
    return n


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    ap = argparse.ArgumentParser(description="lookalike offline demo")
    ap.add_argument("--images", default="demo-images")
    ap.add_argument("--db", default="demo-index")
    ap.add_argument("--out", default="demo-results.png")
    ap.add_argument("--per-dataset", type=positive_int, default=150)
    args = ap.parse_args(argv)

    from lookalike.retrieval.engine import Engine
    from lookalike.retrieval.present import contact_sheet

    images = Path(args.images)
    if not images.exists():
        print(f"demo: writing sample images to {images}/")
        print(f"demo: {build_demo_images(images, args.per_dataset)} images")
    query = unseen_query("demo-query.jpg")
    t0 = time.perf_counter()
    with Engine.open(args.db) as engine:
        report = engine.add([images])
        print(f"demo: {report.summary()}")
        res = engine.search(query, k=5)
        print(f"demo: top 5 for {query} (searched in {(time.perf_counter() - t0):.1f}s including indexing):")
        for r in res:
            print(f"  {r.rank}  {r.score:.4f}  {r.path}")
        img, _ = engine.load_query(query)
        contact_sheet(img, list(res), args.out, title=f"lookalike: {engine.config.model}, {engine.status().images} images")
    print(f"demo: contact sheet written to {args.out}")
    print(f"demo: try  .venv/bin/lookalike search demo-query.jpg --db {args.db} -k 5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
