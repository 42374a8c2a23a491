"""The display stretch: the sky lifted, colour linked, data never changed, odd images handled."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.display import GAMMA_RANGE, DisplayStretch, display_stretch


def _sky(shape=(128, 128), *, seed=0, sky=100.0, noise=3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = sky + noise * rng.standard_normal(shape)
    image[60:64, 60:64] += 5000.0  # a saturated star
    return image.astype(np.float32)


def test_the_stretch_reads_the_data_and_never_writes_it():
    data = _sky()
    before = data.copy()
    stretch = display_stretch(data)
    shown = stretch.render(data)
    np.testing.assert_array_equal(data, before)
    assert shown.shape == data.shape and shown.dtype == np.float32


def test_the_sky_is_grey_not_black_and_the_star_white():
    data = _sky()
    stretch = display_stretch(data, target=0.2)
    shown = stretch.render(data)
    assert np.median(shown) == pytest.approx(0.2, abs=0.03)
    assert shown[62, 62] == 1.0


def test_colour_channels_share_one_range_and_a_tinted_sky_is_taken_down():
    planes = [_sky(seed=k, sky=level) for k, level in enumerate((1400.0, 1300.0, 1000.0))]
    data = np.stack(planes, axis=-1)
    stretch = display_stretch(data, channel_axis=-1)
    shown = stretch.render(data)
    sky = np.median(shown.reshape(-1, 3), axis=0)
    assert sky.max() <= 0.25  # no channel's sky fills the frame with its colour
    assert stretch.contrast_limits[0] > 1000.0  # the black point is under the brightest sky


def test_the_synthetic_sample_looks_like_a_sky_not_a_coloured_square():
    from napari_astrodenoise._sample_data import synthetic_pair

    for image in synthetic_pair(shape=(256, 256)):
        stretch = display_stretch(image.data, channel_axis=0)
        shown = stretch.render(image.data)
        sky = np.median(shown, axis=(1, 2))
        assert sky.max() <= 0.25, image.name
        assert shown.max() == 1.0, image.name  # the stars are there


def test_nan_inf_and_constant_images():
    data = _sky()
    data[:10] = np.nan
    data[10, 10] = np.inf
    stretch = display_stretch(data)
    assert np.all(np.isfinite(stretch.contrast_limits))
    assert np.isfinite(stretch.render(data)).all()
    assert display_stretch(np.full((8, 8), 3.0)) is None
    assert display_stretch(np.full((8, 8), np.nan)) is None


def test_a_noiseless_frame_still_shows_its_sky_dark():
    yy, xx = np.mgrid[:64, :64]
    clean = (50.0 + 1000.0 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 8.0)).astype(np.float32)
    stretch = display_stretch(clean)
    assert stretch.render(clean)[0, 0] <= 0.25
    assert GAMMA_RANGE[0] <= stretch.gamma <= GAMMA_RANGE[1]


def test_layer_kwargs_are_what_a_viewer_takes():
    stretch = DisplayStretch((1.0, 2.0), 0.5)
    assert stretch.layer_kwargs() == {"contrast_limits": (1.0, 2.0), "gamma": 0.5}
    with pytest.raises(ValueError, match="target"):
        display_stretch(_sky(), target=1.5)
