"""Edited copies of real photos among ~1,500 distractors: top-1/top-5 per edit, µAP, ms per query, vs imagededup.

    python benchmarks/copies.py --photos dev        # tune here
    python benchmarks/copies.py --photos eval       # scikit-image photos: report only
Same as ``lookalike bench copies``; see lookalike/bench/copies.py.
"""
from __future__ import annotations

import argparse
import sys

from lookalike.bench.copies import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
