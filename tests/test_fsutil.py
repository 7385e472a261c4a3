"""Human-readable sizes, shared by `lookalike status` and the UI's index page."""
import pytest

from lookalike.fsutil import human_bytes


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"),
                                    (5 * 1024**2, "5.0 MB"), (3 * 1024**3, "3.0 GB"), (2048 * 1024**3, "2048.0 GB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text
