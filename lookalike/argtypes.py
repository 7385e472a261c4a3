"""What every sub-command shares for bad input: argparse value types and the one-line failure with exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .settings import PRECISIONS, RUNTIMES  # the inference runtimes and precisions, as the CLI's choices

__all__ = ["RUNTIMES", "PRECISIONS", "add_runtime_options", "fail", "positive_int", "nonneg_int", "positive_float", "nonneg_float", "fraction", "similarity", "score", "sigma", "lowfreq", "size_bytes", "port"]



def add_runtime_options(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--runtime`` (and ``--precision``) for a sub-command that embeds images."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="inference runtime (default auto: OpenVINO when it works here, else torch)")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default=None,
                            help="inference precision of a new index (default: bf16 for models that keep their accuracy in it, on a CPU that runs it; else fp32; an existing index keeps its own)")


def fail(msg: str, code: int = 2) -> int:
    """Print ``lookalike: msg`` on stderr (one line) and return the exit code (2: bad input)."""
    print(f"lookalike: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return v


def _checked(parse, ok, problem: str, doc: str):
    """An argparse type: ``parse`` the text, then refuse values for which ``ok`` is false."""
    def check(text: str):
        v = parse(text)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{problem}, got {v}")
        return v

    check.__doc__ = doc
    return check


positive_int = _checked(_int, lambda v: v > 0, "must be positive", "A whole number > 0.")
nonneg_int = _checked(_int, lambda v: v >= 0, "must be zero or more", "A whole number >= 0.")
positive_float = _checked(_float, lambda v: v > 0, "must be positive", "A finite number > 0.")
nonneg_float = _checked(_float, lambda v: v >= 0, "must be zero or more", "A finite number >= 0.")
fraction = _checked(_float, lambda v: 0 <= v <= 1, "must be within 0..1", "A share within 0..1.")
similarity = _checked(_float, lambda v: 0 < v <= 1, "must be within (0, 1]", "A cosine similarity within (0, 1].")
score = _checked(_float, lambda v: -1 <= v <= 1, "a cosine similarity is within -1..1", "A cosine similarity, -1..1.")
port = _checked(_int, lambda v: 0 < v < 65536, "not a port number", "A TCP port number, 1..65535.")


def _word_or_number(words: tuple[str, ...], what: str, hi: float, doc: str) -> Callable[[str], float | str]:
    """An argparse type: one of ``words``, or a number within 0..``hi`` (``what`` names it in errors)."""

    def parse(text: str) -> float | str:
        if text in words:
            return text
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(repr(w) for w in words)} or a number, "
                                             f"got '{text}'") from None
        if not 0 <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be within 0..{hi:g}, got {v}")
        return v

    parse.__doc__ = doc
    return parse


sigma = _word_or_number(("auto",), "sigma", 5, "'auto' or a noise level on the [-1, 1] pixel scale, within 0..5.")
lowfreq = _word_or_number(("auto", "off"), "weight", 10,
                          "'auto', 'off' or a fusion weight for the low-frequency channel, within 0..10.")


def size_bytes(text: str) -> int:
    """A byte count: 2000000000, 2G, 512M, 1.5GB, 800k."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if t[-1:] in "KMGT" else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2G or 512M, got '{text}'") from None
    if v != v or v in (float("inf"), float("-inf")) or v >= 2**63:
        raise argparse.ArgumentTypeError(f"expected a finite size such as 2G or 512M, got '{text}'")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return int(v)
