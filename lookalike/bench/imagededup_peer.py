"""Peer search with imagededup's perceptual hashes; runs in its own venv (``python imagededup_peer.py SPEC OUT``).

SPEC (JSON): {"gallery": [paths], "queries": [paths], "k": int, "methods": ["phash", "dhash"], "seed": int}.
OUT (JSON): per method {"topk": [[gallery index]], "scores": [[1 - hamming/64]], "ms_per_query": float}.
Ties in Hamming distance are broken by a seeded random order, never by gallery order. Imports no lookalike code.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np


def _bits(hex_hash: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))


def main(spec_path: str, out_path: str) -> int:
    from imagededup.methods import DHash, PHash

    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    k = int(spec["k"])
    rng = np.random.default_rng(int(spec.get("seed", 0)))
    out = {}
    for method in spec["methods"]:
        hasher = {"phash": PHash, "dhash": DHash}[method](verbose=False)
        gal = np.stack([_bits(hasher.encode_image(image_file=p)) for p in spec["gallery"]]).astype(np.int16)
        tiebreak = rng.random(len(gal)) * 0.5  # below one bit: only orders equal distances
        topk, scores, ms = [], [], []
        for q in spec["queries"]:
            t0 = time.perf_counter()
            d = np.abs(gal - _bits(hasher.encode_image(image_file=q)).astype(np.int16)).sum(axis=1)
            order = np.argsort(d + tiebreak, kind="stable")[:k]
            ms.append((time.perf_counter() - t0) * 1000.0)
            topk.append(order.tolist())
            scores.append((1.0 - d[order] / gal.shape[1]).round(6).tolist())
        out[method] = {"topk": topk, "scores": scores, "ms_per_query": float(np.mean(ms)) if ms else 0.0}
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
