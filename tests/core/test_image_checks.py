"""Warnings before a run: tiny, constant, mostly-NaN images are named; a normal one is not."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.checks import image_warnings


def test_a_normal_image_has_no_warning():
    rng = np.random.default_rng(0)
    assert image_warnings(rng.normal(100, 3, (128, 128))) == []
    assert image_warnings(rng.normal(100, 3, (128, 128, 3)), channel_axis=-1) == []


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.random.default_rng(1).normal(0, 1, (8, 8)), "only 8 x 8 px"),
        (np.zeros((128, 128)), "constant"),
        (np.full((128, 128), np.nan), "every pixel is NaN"),
    ],
    ids=["tiny", "all-zero", "all-NaN"],
)
def test_unusable_images_are_named(image, words):
    assert any(words in w for w in image_warnings(image))


def test_mostly_nan_says_how_much():
    image = np.random.default_rng(2).normal(100, 3, (128, 128))
    image[:100] = np.nan
    [warning] = image_warnings(image)
    assert warning.startswith("78 % of the pixels are NaN")


def test_colour_channels_are_not_taken_for_a_small_edge():
    image = np.random.default_rng(3).normal(100, 3, (3, 128, 128))
    assert image_warnings(image, channel_axis=0) == []
