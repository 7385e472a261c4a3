"""Per-query rules for the low-frequency channel, replayed from the benchmark JSONs (no search is run): each query
is re-created from its stored seed, its gate value is computed, and its top-1 is taken from the method the rule
picks (both methods were measured by ``lookalike bench copies|noisy``).

- ``--gate sigma``: fuse when ``estimate_sigma`` of the query exceeds TAU ([-1, 1] scale); copies and noisy JSONs.
  The rule of ``--denoise auto`` on photos (retrieval/denoise/query.py).
- ``--gate detail``: fuse when the query's long side is <= S px or its ``detail_level`` <= D; a copies JSON.
  The rule of plain search (retrieval/fusion.py).

    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --gate sigma --photos dev --tau 0.1,0.2,0.3 \\
        --copies benchmarks/results/copies-dev-levers.json --noisy benchmarks/results/noisy-dev.json \\
        --plain "+lowdetail" --fused "+lowdetail+lowfreq 1"
    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --gate detail --photos dev \\
        --copies benchmarks/results/copies-dev-ntxent-copies-lowfreq.json --plain "ntxent-copies lowfreq-off|ntxent-copies" \\
        --fused "+lowfreq 0.25" --fused "+lowfreq 0.5" --fused "+lowfreq 1"
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gate", choices=("sigma", "detail"), default="sigma")
    p.add_argument("--photos", choices=("dev", "eval"), required=True)
    p.add_argument("--copies", required=True)
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
    photos = dict(photo_set(a.photos))
    if a.gate == "sigma":
        if not a.noisy:
            p.error("--gate sigma needs --noisy")
        sigma_gate(a, photos)
    else:
        detail_gate(a, photos)
