"""When a search fuses the low-frequency channel (indexer.signature) with the neural score, and how much.

Plain search and ``--denoise auto`` on photos follow measured rules, chosen on the dev photos only
(docs/benchmarks.md section 11; `benchmarks/gated_lowfreq.py` replays them):

- a **low-detail** query (long side <= 160 px: a thumbnail; or :func:`detail_level` <= 0.003: a heavy blur) is
  fused with weight 0.5, unless it is a tiny image in its own right (long side <= 48 px, like the MNIST and
  CIFAR-10 images, whose figures stay those of the neural score). On dev (720 edited copies, head
  ``ntxent-copies``) that lifts top-1 from 0.942 to 0.975 (blur 0.87 -> 1.00, thumbnail 0.72 -> 1.00), about
  what indexing a 64 px view of every image beside it gives (0.976), at no indexing cost. It fuses only when
  some indexed image's signature matches the query's at cosine >= LOWDETAIL_MATCH: on dev every gated blurred
  copy and thumbnail has such a match (lowest 0.995), while the gated queries that are not a low-detail copy
  of something (smooth crops and a colour-shifted smooth picture) reach at most 0.83
  (`benchmarks/gated_lowfreq.py --gate match`); fusing those only brings in the hash's blindness to geometry;
- a **noisy** query (``--denoise auto``, estimated sigma > 0.2 on the [-1, 1] scale) is fused with weight 1,
  see ``retrieval.denoise.query``.

Any other query is searched with the neural score alone: the channel breaks geometric edits (rotate, mirror, crop).
"""
from __future__ import annotations

from PIL import Image

from lookalike.indexer.signature import detail_level

__all__ = ["LOWDETAIL_MAX_SIDE", "LOWDETAIL_DETAIL", "LOWDETAIL_WEIGHT", "LOWDETAIL_MATCH", "TINY_SIDE",
           "lowdetail_weight", "parse_lowfreq"]

LOWDETAIL_MAX_SIDE = 160     # px, long side of a thumbnail query
LOWDETAIL_DETAIL = 0.003     # detail_level at or below it: a heavily blurred query
LOWDETAIL_WEIGHT = 0.5       # dev: 0.5 and 1 tie (0.975), 0.25 gives 0.972; the smaller weight of the tie
LOWDETAIL_MATCH = 0.9        # best low-frequency cosine needed to fuse (dev: copies >= 0.995, others <= 0.83)
TINY_SIDE = 48               # px: queries this small (28 px MNIST, 32 px CIFAR-10) are never fused


def lowdetail_weight(image: Image.Image) -> float:
    """The fusion weight for a plain query: LOWDETAIL_WEIGHT for a thumbnail or a heavily blurred photo, else 0.
    Sizes are those of the file (``info["original_size"]``), not of a JPEG decoded at a reduced scale."""
    side = max(image.info.get("original_size", image.size))
    if side <= TINY_SIDE:
        return 0.0
    if side <= LOWDETAIL_MAX_SIDE or detail_level(image) <= LOWDETAIL_DETAIL:
        return LOWDETAIL_WEIGHT
    return 0.0


def parse_lowfreq(value: "str | float | None") -> "str | float":
    """``auto`` (the rules above), ``off``, or a fixed weight >= 0 (ValueError otherwise)."""
    if value is None:
        return "auto"
    if isinstance(value, str) and value in ("auto", "off"):
        return value
    w = float(value)
    if not w >= 0 or w == float("inf"):
        raise ValueError(f"lowfreq weight must be 'auto', 'off' or a number >= 0, got {value!r}")
    return w
