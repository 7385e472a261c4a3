"""The ``lookalike`` console script: one parser, sub-commands contributed by each part of the package."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands: each has add_commands(subparsers, train_subparsers).
COMMAND_MODULES = [
    "lookalike.commands",            # index, search, status, errors, rebuild, data export
    "lookalike.training.commands",   # train siamese / ntxent, eval
    "lookalike.training.ddpm.commands",  # train ddpm, denoise, bench denoise
    "lookalike.ui.commands",         # ui
    "lookalike.training.copy_head",  # train copy-head
    "lookalike.bench.commands",      # bench copies / noisy
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="lookalike", description="Local image similarity search.")
    parser.add_argument("--version", action="version", version=f"lookalike {__import__('lookalike').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser("train", help="train an embedder or a denoiser")
    train_sub = train.add_subparsers(dest="train_command", metavar="MODEL")
    train.set_defaults(func=lambda a: (train.print_help(), 2)[1])
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bench.set_defaults(func=lambda a: (bench.print_help(), 2)[1])
    parser._lookalike_bench = bench_sub  # type: ignore[attr-defined]
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part is not present in this build
            raise
        mod.add_commands(sub, train_sub, bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:  # a handler gave up after printing its one-line message
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
