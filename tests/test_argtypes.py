"""argparse value types and the one-line failure: one message style for bad arguments."""
import argparse

import pytest

from lookalike.argtypes import fail, fraction, port, positive_float, score, size_bytes


def test_positive_float():
    assert positive_float("0.05") == 0.05
    for bad, msg in [("0", "must be positive"), ("-1", "must be positive"), ("nan", "finite number"),
                     ("inf", "finite number"), ("abc", "expected a number, got 'abc'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            positive_float(bad)


@pytest.mark.parametrize("fn,good,bad", [(fraction, "0.8", "1.5"), (score, "-0.2", "2"), (port, "8000", "70000"),
                                         (size_bytes, "1.5G", "-3")])
def test_bounded_types(fn, good, bad):
    fn(good)
    with pytest.raises(argparse.ArgumentTypeError):
        fn(bad)


def test_fail_prints_one_line(capsys):
    assert fail("a\nb  c") == 2
    assert capsys.readouterr().err == "lookalike: a b c\n"
