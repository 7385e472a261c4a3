"""Per-query rules for the low-frequency channel, replayed from the benchmark JSONs (no search is run): each query
is re-created from its stored seed, its gate value is computed, and its top-1 is taken from the method the rule
picks (both methods were measured by ``lookalike bench copies|noisy``).

- ``--gate sigma``: fuse when ``estimate_sigma`` of the query exceeds TAU ([-1, 1] scale); copies and noisy JSONs.
  The rule of ``--denoise auto`` on photos (retrieval/denoise/query.py).
- ``--gate detail``: fuse when the query's long side is <= S px or its ``detail_level`` <= D; a copies JSON.
  The rule of plain search (retrieval/fusion.py).
- ``--gate match``: of the queries the detail rule opens, fuse only those whose best low-frequency cosine against
  the gallery's signatures is at least M (``LOWDETAIL_MATCH`` of retrieval/fusion.py); a copies JSON.
- ``--gate noise``: ``noise_level`` of the photos, their edited and their noisy copies (no JSON): where
  ``VIEWS_AUTO_MAX_NOISE`` of retrieval/searcher.py sits.

    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --gate sigma --photos dev --tau 0.1,0.2,0.3 \\
        --copies benchmarks/results/copies-dev-levers.json --noisy benchmarks/results/noisy-dev.json \\
        --plain "+lowdetail" --fused "+lowdetail+lowfreq 1"
    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --gate detail --photos dev \\
        --copies benchmarks/results/copies-dev-ntxent-copies-lowfreq.json --plain "ntxent-copies lowfreq-off|ntxent-copies" \\
        --fused "+lowfreq 0.25" --fused "+lowfreq 0.5" --fused "+lowfreq 1"
    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --gate match --photos dev \\
        --copies benchmarks/results/copies-dev-ntxent-copies-bf16.json --plain "ntxent-copies lowfreq-off" \\
        --fused "ntxent-copies"
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lookalike.data.edits import apply_edit, apply_noise
from lookalike.data.photosets import photo_set


def _method(result: dict, names: str) -> str | None:
    """The first method of ``result`` named by one of the '|'-separated ``names`` (model prefix optional)."""
    for name in names.split("|"):
        found = next((m for m in result["methods"] if m == name or m.endswith(" " + name.lstrip())), None)
        if found:
            return found
    return None


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def sigma_gate(a, photos) -> None:
    from lookalike.retrieval.denoise import estimate_sigma

    copies, noisy = json.load(open(a.copies)), json.load(open(a.noisy))
    cs = [estimate_sigma(apply_edit(photos[q["photo"]], q["edit"], q["strength"], seed=q["seed"]))
          for q in copies["queries"]]
    ns = [estimate_sigma(apply_noise(photos[q["photo"]], q["level"], seed=q["seed"])) for q in noisy["queries"]]
    print(f"{a.photos}: estimated sigma of the edited copies, median / 99th pct / max: "
          f"{np.median(cs):.3f} / {np.percentile(cs, 99):.3f} / {max(cs):.3f}")
    for lvl in noisy["levels"]:
        v = [x for x, q in zip(ns, noisy["queries"]) if q["level"] == lvl]
        print(f"  {lvl}: estimated sigma min / median {min(v):.3f} / {np.median(v):.3f}")
    for tau in _floats(a.tau):
        line = [f"tau {tau:g}:"]
        for res, sig in ((copies, cs), (noisy, ns)):
            lo, hi = _method(res, a.plain), _method(res, a.fused[0])
            if lo is None or (hi is None and any(x > tau for x in sig)):
                line.append(f"{res['bench']}: method missing ({a.plain} / {a.fused[0]})")
                continue
            ok = [q["top1"][hi if x > tau else lo] == q["photo"] for q, x in zip(res["queries"], sig)]
            if res["bench"] == "copies":
                line.append(f"copies top-1 {np.mean(ok):.4f} ({sum(x > tau for x in sig)} copies fused)")
            else:
                per: dict[str, list[bool]] = {}
                for q, o in zip(res["queries"], ok):
                    per.setdefault(q["level"], []).append(o)
                line.append("noisy " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in per.items()))
        print("  ".join(line))


def detail_gate(a, photos) -> None:
    from lookalike.indexer.signature import detail_level

    res = json.load(open(a.copies))
    feats = []
    for q in res["queries"]:
        im = apply_edit(photos[q["photo"]], q["edit"], q["strength"], seed=q["seed"])
        feats.append((max(im.size), detail_level(im)))
    lo = _method(res, a.plain)
    if lo is None:
        raise SystemExit(f"method missing: {a.plain}")
    base = np.mean([q["top1"][lo] == q["photo"] for q in res["queries"]])
    print(f"{a.photos}: {lo}: top-1 {base:.4f}")
    rows = []
    for fused in a.fused:
        hi = _method(res, fused)
        if hi is None:
            print(f"method missing: {fused}")
            continue
        for side in _floats(a.max_side):
            for d in _floats(a.detail):
                pick = [f[0] <= side or f[1] <= d for f in feats]
                per: dict[str, list[bool]] = {}
                for q, p in zip(res["queries"], pick):
                    per.setdefault(q["edit"], []).append(q["top1"][hi if p else lo] == q["photo"])
                top1 = float(np.mean([x for v in per.values() for x in v]))
                worst = min(per, key=lambda k: np.mean(per[k]))
                rows.append((top1, f"{hi} if side <= {side:g} or detail <= {d:g}: top-1 {top1:.4f} "
                                   f"({sum(pick)} fused; lowest kind {worst} {np.mean(per[worst]):.3f})"))
    for _, line in sorted(rows, key=lambda r: -r[0]):
        print("  " + line)


def match_gate(a, photos) -> None:
    """Among the queries the detail gate opens, the best low-frequency cosine against the gallery's signatures,
    and top-1 when a query fuses only at or above each ``--match`` threshold."""
    from PIL import Image

    from lookalike.bench.common import build_gallery, cache_root
    from lookalike.data.photosets import distractors
    from lookalike.indexer.signature import lowfreq_signature
    from lookalike.retrieval.fusion import lowdetail_weight

    res = json.load(open(a.copies))
    gallery = build_gallery(cache_root() / f"gallery-{a.photos}-{res['n_distractors']}", list(photos.items()),
                            distractors(res["n_distractors"]))
    sigs = np.stack([lowfreq_signature(Image.open(p).convert("RGB")) for p in gallery.paths])
    lo, hi = _method(res, a.plain), _method(res, a.fused[0])
    if lo is None or hi is None:
        raise SystemExit(f"method missing: {a.plain} / {a.fused[0]}")
    rows = []
    for q in res["queries"]:
        im = apply_edit(photos[q["photo"]], q["edit"], q["strength"], seed=q["seed"])
        best = float((sigs @ lowfreq_signature(im)).max()) if lowdetail_weight(im) > 0 else None
        rows.append((q, best))
    gated = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])
    print(f"{a.photos}: {len(gated)} of {len(rows)} copies gated; best low-frequency cosine, {lo} / {hi} top-1:")
    for q, best in gated:
        print(f"  {best:.3f}  {q['edit']:<10} {q['strength']:<6} {q['photo']:<28} "
              f"{int(q['top1'][lo] == q['photo'])} / {int(q['top1'][hi] == q['photo'])}")
    for m in _floats(a.match):
        ok = [q["top1"][hi if best is not None and best >= m else lo] == q["photo"] for q, best in rows]
        print(f"fused when gated and match >= {m:g}: top-1 {np.mean(ok):.4f}")


def noise_gate(a, photos) -> None:
    """``noise_level`` of the clean photos, their edited copies and their noisy copies (views="auto" skips queries
    above ``VIEWS_AUTO_MAX_NOISE`` of retrieval/searcher.py)."""
    from lookalike.bench.copies import copy_queries
    from lookalike.data.edits import EDITS, NOISES
    from lookalike.indexer.signature import noise_level

    items = list(photos.items())
    clean = [noise_level(im) for _, im in items]
    copies = [noise_level(apply_edit(photos[n], e, s, seed=sd))
              for n, e, s, sd in copy_queries(items, list(EDITS), ["mild", "strong"], 0)]
    print(f"{a.photos}: noise_level of the {len(clean)} photos: max {max(clean):.4f}; of the {len(copies)} edited "
          f"copies: median {np.median(copies):.4f}, 99th pct {np.percentile(copies, 99):.4f}, "
          f"top three {', '.join(f'{x:.4f}' for x in sorted(copies)[-3:])}")
    for li, lvl in enumerate(NOISES):
        v = [noise_level(apply_noise(im, lvl, seed=pi * 100 + li)) for pi, (_, im) in enumerate(items)]
        print(f"  {lvl}: min {min(v):.4f}, median {np.median(v):.4f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gate", choices=("sigma", "detail", "match", "noise"), default="sigma")
    p.add_argument("--max-side-photos", type=int, default=1024, help="cap of the photos' long side (--gate noise)")
    p.add_argument("--match", default="0,0.8,0.9,0.95", help="comma-separated best-match thresholds (--gate match)")
    p.add_argument("--photos", choices=("dev", "eval"), required=True)
    p.add_argument("--copies", help="copies JSON (every gate but noise)")
    p.add_argument("--noisy", help="noisy-photo JSON (--gate sigma)")
    p.add_argument("--tau", default="0.2", help="comma-separated sigma thresholds ([-1, 1] scale)")
    p.add_argument("--max-side", default="0,160,256", help="comma-separated long-side thresholds (px)")
    p.add_argument("--detail", default="0,0.002,0.003,0.005", help="comma-separated detail_level thresholds")
    p.add_argument("--plain", default="+lowdetail", help="method used when the gate is closed ('|': first present)")
    p.add_argument("--fused", action="append", default=None, help="method used when it is open (repeatable)")
    a = p.parse_args()
    a.fused = a.fused or ["+lowdetail+lowfreq 1"]
    import torch

    torch.set_num_threads(1)
    photos = dict(photo_set(a.photos, a.max_side_photos))
    if a.gate != "noise" and not a.copies:
        p.error(f"--gate {a.gate} needs --copies")
    if a.gate == "noise":
        noise_gate(a, photos)
    elif a.gate == "sigma":
        if not a.noisy:
            p.error("--gate sigma needs --noisy")
        sigma_gate(a, photos)
    elif a.gate == "match":
        match_gate(a, photos)
    else:
        detail_gate(a, photos)
