"""What every sub-command shares for bad input: argparse value types and the one-line failure with exit 2."""
from __future__ import annotations

import argparse
import sys

__all__ = ["RUNTIMES", "PRECISIONS", "add_runtime_options", "fail", "positive_int", "nonneg_int", "positive_float", "nonneg_float", "fraction", "score", "sigma", "size_bytes", "port"]


# inference runtimes and precisions (lookalike.retrieval.runtime runs them)
RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("fp32", "bf16", "int8")


def add_runtime_options(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--runtime`` (and ``--precision``) for a sub-command that embeds images."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="inference runtime (default auto: OpenVINO when it works here, else torch)")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default=None,
                            help="inference precision of a new index (default fp32; an existing index keeps its own)")


def fail(msg: str, code: int = 2) -> int:
    """Print ``lookalike: msg`` on stderr (one line) and return the exit code (2: bad input)."""
    print(f"lookalike: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None


def positive_int(text: str) -> int:
    """A whole number > 0."""
    v = _int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def nonneg_int(text: str) -> int:
    """A whole number >= 0."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {v}")
    return v


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {v}")
    return v


def fraction(text: str) -> float:
    """A share within 0..1."""
    v = _float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {v}")
    return v


def score(text: str) -> float:
    """A cosine similarity, -1..1."""
    v = _float(text)
    if not -1 <= v <= 1:
        raise argparse.ArgumentTypeError(f"a cosine similarity is within -1..1, got {v}")
    return v


def port(text: str) -> int:
    """A TCP port number, 1..65535."""
    v = _int(text)
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"not a port number: {v}")
    return v


def sigma(text: str) -> float | str:
    """'auto' or a noise level on the [-1, 1] pixel scale, within 0..5."""
    if text == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got '{text}'") from None
    if not 0 <= v <= 5:
        raise argparse.ArgumentTypeError(f"sigma must be within 0..5, got {v}")
    return v


def size_bytes(text: str) -> int:
    """A byte count: 2000000000, 2G, 512M, 1.5GB, 800k."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if t[-1:] in "KMGT" else t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2G or 512M, got '{text}'") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return int(v)
