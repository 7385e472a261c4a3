"""argparse value types: one message style for bad arguments."""
import argparse

import pytest

from lookalike.argtypes import positive_float


def test_positive_float():
    assert positive_float("0.05") == 0.05
    for bad, msg in [("0", "must be positive"), ("-1", "must be positive"), ("nan", "must be positive"),
                     ("abc", "expected a number, got 'abc'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            positive_float(bad)
