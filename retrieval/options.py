"""How a search runs: one frozen :class:`SearchOptions` that ``Engine.search`` takes (and that the command line, the
UI and the HTTP API fill in), checked where it is used (:class:`~lookalike.retrieval.searcher.Searcher`)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["SearchOptions"]


@dataclass(frozen=True)
class SearchOptions:
    """The knobs of one search; see :meth:`lookalike.Engine.search` for what each does."""

    k: int = 10                        # how many results
    min_score: float | None = None     # drop results whose cosine is below this
    exclude_self: bool = False         # leave out the indexed image with the query's own bytes
    denoise: str | None = None         # "auto", "ddpm", "ddim", "classical" or "none": clean a noisy query first
    sigma: float | str = "auto"        # the query's noise level for the denoiser ("auto": estimated)
    n_samples: int = 1                 # denoised samples averaged (> 1 also reports their consistency)
    denoise_model: str | None = None   # the DDPM to denoise with (None: the one for the query's domain)
    lowfreq: str | float = "auto"      # "auto", "off" or a fixed weight of the low-frequency channel
    views: str = "none"                # "none", "mirror", "mirror-turns" or "auto": flipped / turned copies too
    copies_only: bool = False          # only results the copy score calls a copy

    def updated(self, **changes: Any) -> SearchOptions:
        """A copy with the given fields changed; a None value keeps this one's (so unset keywords change nothing)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown search option(s): {', '.join(unknown)}")
        given = {name: value for name, value in changes.items() if value is not None}
        return replace(self, **given) if given else self
