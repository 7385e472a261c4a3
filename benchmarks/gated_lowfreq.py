"""The low-frequency rule of ``--denoise auto`` on photos, replayed from the benchmark JSONs (no search is run):
each query is re-created from its stored seed, ``estimate_sigma`` is computed, and its top-1 is taken from the
method the rule picks (fused when sigma exceeds TAU on the [-1, 1] scale; both methods were measured by
``lookalike bench copies|noisy``). The rule lives in retrieval/denoise/query.py. (The plain-search gates this
script also replayed were replaced by the calibrated copy score, retrieval/calibration.py.)

    OMP_NUM_THREADS=1 python -m benchmarks.gated_lowfreq --photos dev --tau 0.1,0.2,0.3 \\
        --copies benchmarks/results/copies-dev-levers.json --noisy benchmarks/results/noisy-dev.json \\
        --plain "+lowdetail" --fused "+lowdetail+lowfreq 1"
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-side-photos", type=int, default=1024, help="cap of the photos' long side")
    p.add_argument("--photos", choices=("dev", "eval"), required=True)
    p.add_argument("--copies", required=True, help="copies JSON")
    p.add_argument("--noisy", required=True, help="noisy-photo JSON")
    p.add_argument("--tau", default="0.2", help="comma-separated sigma thresholds ([-1, 1] scale)")
    p.add_argument("--plain", default="+lowdetail", help="method used when the gate is closed ('|': first present)")
    p.add_argument("--fused", action="append", default=None, help="method used when it is open (repeatable)")
    a = p.parse_args()
    a.fused = a.fused or ["+lowdetail+lowfreq 1"]
    import torch

    torch.set_num_threads(1)
    photos = dict(photo_set(a.photos, a.max_side_photos))
    sigma_gate(a, photos)
