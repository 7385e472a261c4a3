"""CLI: ``lookalike bench copies`` and ``lookalike bench noisy``."""
from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def _copies(args: argparse.Namespace) -> int:
    from .copies import main

    return main(args)


def _noisy(args: argparse.Namespace) -> int:
    from .noisy import main

    return main(args)


def add_commands(subparsers, train_subparsers, bench_subparsers) -> None:
    """Register ``bench copies`` and ``bench noisy``."""
    from .copies import add_arguments

    b = bench_subparsers.add_parser("copies", help="find the original photo of edited copies among distractors")
    add_arguments(b)
    b.set_defaults(func=_copies)
    from .noisy import add_arguments as noisy_arguments

    n = bench_subparsers.add_parser("noisy", help="find the original photo of noisy copies, with and without denoising")
    noisy_arguments(n)
    n.set_defaults(func=_noisy)
