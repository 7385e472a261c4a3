"""The AugLy edit suite (issue 22): every kind runs under Pillow 10+ / numpy 2 (two shimmed), seeded, RGB out."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.data.augly_edits import AUGLY_KINDS, GEOMETRIC_KINDS, augly_available, augly_edit
from lookalike.data.photos import load_photo

pytestmark = pytest.mark.skipif(not augly_available(), reason="AugLy is not installed (the bench extra)")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return load_photo("chelsea").convert("RGB").resize((240, 160), Image.LANCZOS)


def test_the_suite_is_broad():
    assert len(AUGLY_KINDS) >= 33 and {"combo2", "combo3", "combo3-geo"} <= set(AUGLY_KINDS)
    assert set(GEOMETRIC_KINDS) <= set(AUGLY_KINDS)


@pytest.mark.parametrize("kind", sorted(AUGLY_KINDS))
def test_every_kind_runs_seeded_and_changes_the_picture(photo, kind):
    a = augly_edit(photo, kind, seed=5)
    b = augly_edit(photo, kind, seed=5)
    assert a.mode == "RGB" and a.width >= 8 and a.height >= 8
    assert np.array_equal(np.asarray(a), np.asarray(b))  # a seed fixes the copy
    same_size = a.size == photo.size
    assert not same_size or np.abs(np.asarray(a, np.int16) - np.asarray(photo, np.int16)).mean() > 0.5


def test_the_two_shimmed_functions(photo):
    meme = augly_edit(photo, "meme", seed=1)  # FreeTypeFont.getsize_multiline, removed in Pillow 10
    assert meme.height > photo.height and meme.width == photo.width
    persp = augly_edit(photo, "perspective", seed=1)  # np.float, removed in numpy 1.24
    assert persp.size == photo.size


def test_unknown_kind_is_refused(photo):
    with pytest.raises(ValueError, match="unknown AugLy edit"):
        augly_edit(photo, "sepia")
