"""A per-query rule for the low-frequency channel, replayed from the benchmark JSONs: fuse the DCT channel with
weight W only when ``estimate_sigma`` of the query exceeds TAU ([-1, 1] scale), else use the plain method.

It re-creates each query from its stored seed, estimates its noise level, and takes that query's top-1 from the
method the rule picks (both methods were measured by ``lookalike bench copies|noisy``). No search is run.

    OMP_NUM_THREADS=1 python benchmarks/gated_lowfreq.py --photos dev --tau 0.1,0.2,0.3 \
        --copies benchmarks/results/copies-dev-levers.json --noisy benchmarks/results/noisy-dev.json \
        --plain "+lowdetail" --fused "+lowdetail+lowfreq 1"
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from lookalike.data.edits import apply_edit, apply_noise
from lookalike.data.photosets import photo_set
from lookalike.retrieval.denoise import estimate_sigma


def _method(result: dict, names: str) -> str | None:
    """The first method of ``result`` named by one of the '|'-separated ``names`` (model prefix optional)."""
    for name in names.split("|"):
        found = next((m for m in result["methods"] if m == name or m.endswith(" " + name.lstrip())), None)
        if found:
            return found
    return None


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", choices=("dev", "eval"), required=True)
    p.add_argument("--copies", required=True)
    p.add_argument("--noisy", required=True)
    p.add_argument("--tau", default="0.2", help="comma-separated thresholds on the [-1, 1] sigma scale")
    p.add_argument("--plain", default="+lowdetail", help="method used below the threshold ('|': first present)")
    p.add_argument("--fused", default="+lowdetail+lowfreq 1", help="method used above the threshold ('|': first present)")
    a = p.parse_args()
    torch.set_num_threads(1)
    photos = dict(photo_set(a.photos))
    copies, noisy = json.load(open(a.copies)), json.load(open(a.noisy))
    cs = [estimate_sigma(apply_edit(photos[q["photo"]], q["edit"], q["strength"], seed=q["seed"]))
          for q in copies["queries"]]
    ns = [estimate_sigma(apply_noise(photos[q["photo"]], q["level"], seed=q["seed"])) for q in noisy["queries"]]
    print(f"{a.photos}: estimated sigma of the edited copies, median / 99th pct / max: "
          f"{np.median(cs):.3f} / {np.percentile(cs, 99):.3f} / {max(cs):.3f}")
    for lvl in noisy["levels"]:
        v = [x for x, q in zip(ns, noisy["queries"]) if q["level"] == lvl]
        print(f"  {lvl}: estimated sigma min / median {min(v):.3f} / {np.median(v):.3f}")
    for tau in (float(t) for t in a.tau.split(",")):
        line = [f"tau {tau:g}:"]
        for res, sig, key in ((copies, cs, "edit"), (noisy, ns, "level")):
            lo, hi = _method(res, a.plain), _method(res, a.fused)
            if lo is None or (hi is None and any(x > tau for x in sig)):
                line.append(f"{res['bench']}: method missing ({a.plain} / {a.fused})")
                continue
            ok = [q["top1"][hi if x > tau else lo] == q["photo"] for q, x in zip(res["queries"], sig)]
            if res["bench"] == "copies":
                line.append(f"copies top-1 {np.mean(ok):.4f} ({sum(x > tau for x in sig)} copies fused)")
            else:
                per = {}
                for q, o in zip(res["queries"], ok):
                    per.setdefault(q["level"], []).append(o)
                line.append("noisy " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in per.items()))
        print("  ".join(line))
