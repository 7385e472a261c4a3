"""How a search may fuse the low-frequency channel (indexer.signature) with the neural score at a fixed weight.

Plain search needs no fusion rule: the calibrated copy score (retrieval/calibration.py) weighs both channels for
every query. A fixed weight is used when asked for (``lowfreq=W``) and by ``--denoise auto`` on a noisy photo
(estimated sigma > 0.2 on the [-1, 1] scale, weight 1; ``retrieval.denoise.query``). ``lowfreq="off"`` ranks by
the neural score alone. Figures: docs/benchmarks.md sections 6.2 (noisy photos) and 7 (the calibrated copy score).
"""
from __future__ import annotations

__all__ = ["parse_lowfreq"]


def parse_lowfreq(value: "str | float | None") -> "str | float":
    """``auto`` (the copy score decides), ``off``, or a fixed weight >= 0 (ValueError otherwise)."""
    if value is None:
        return "auto"
    if isinstance(value, str) and value in ("auto", "off"):
        return value
    w = float(value)
    if not w >= 0 or w == float("inf"):
        raise ValueError(f"lowfreq weight must be 'auto', 'off' or a number >= 0, got {value!r}")
    return w
