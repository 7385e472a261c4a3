"""Noisy copies of real photos among ~1,500 distractors: top-1 per noise level with and without denoising, vs imagededup.

    python benchmarks/noisy_photos.py --photos dev
    python benchmarks/noisy_photos.py --photos eval
Same as ``lookalike bench noisy``; see lookalike/bench/noisy.py.
"""
from __future__ import annotations

import argparse
import sys

from lookalike.bench.noisy import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
