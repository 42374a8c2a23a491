"""Frames for fine-tuning: FITS or arrays, bad input refused, noise correlation measured."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import gaussian_filter

from napari_astrodenoise.finetune.frames import (
    check_frames,
    check_white_noise,
    load_frames,
    noise_correlation,
    split_planes,
)


def _noise(shape=(128, 128), seed=0):
    return np.random.default_rng(seed).normal(100.0, 10.0, shape).astype(np.float32)


def _write(path, data, **cards):
    hdu = fits.PrimaryHDU(data)
    hdu.header.update(cards)
    hdu.writeto(path)
    return path


def test_fits_frames_carry_their_name_hash_and_camera_cards(tmp_path):
    path = _write(
        tmp_path / "light_001.fits", _noise(), INSTRUME="Cam", EXPTIME=60.0, BAYERPAT="RGGB"
    )
    (sub,) = load_frames([path])
    assert sub.name == "light_001"
    assert len(sub.sha256) == 64
    assert sub.bayer_pattern == "RGGB"
    assert sub.record() == {
        "name": "light_001",
        "shape": [128, 128],
        "sha256": sub.sha256,
        "bayer_pattern": "RGGB",
        "instrume": "Cam",
        "exptime": 60.0,
    }
    (arr,) = load_frames([_noise()])
    assert arr.record() == {"name": "array 0", "shape": [128, 128]}
    assert load_frames([path], bayer=False)[0].bayer_pattern is None
    assert load_frames([_noise()], bayer="grbg")[0].bayer_pattern == "GRBG"


def test_xisf_and_tiff_frames_read_like_fits(tmp_path):
    from napari_astrodenoise.tiff_io import write_tiff
    from napari_astrodenoise.xisf_write import write_xisf

    frame = _noise()
    header = fits.Header({"INSTRUME": "Cam", "EXPTIME": 60.0})
    paths = [
        write_xisf(tmp_path / "light_002.xisf", frame, header=header),
        write_tiff(tmp_path / "light_003.tif", frame, header=header),
    ]
    for sub, name in zip(load_frames(paths), ["light_002", "light_003"], strict=True):
        np.testing.assert_array_equal(sub.data, frame)
        assert sub.name == name and sub.cards == {"INSTRUME": "Cam", "EXPTIME": 60.0}


@pytest.mark.parametrize(
    ("cards_b", "match"),
    [
        ({"INSTRUME": "Other"}, "INSTRUME is 'Cam' in a but 'Other' in b"),
        ({"EXPTIME": 30.0}, "EXPTIME is 60.0 in a but 30.0 in b"),
        ({"BAYERPAT": "RGGB"}, "one Bayer pattern"),
    ],
)
def test_frames_of_another_camera_or_exposure_are_refused(tmp_path, cards_b, match):
    a = _write(tmp_path / "a.fits", _noise(seed=1), INSTRUME="Cam", EXPTIME=60.0)
    b = _write(
        tmp_path / "b.fits", _noise(seed=2), **{"INSTRUME": "Cam", "EXPTIME": 60.0, **cards_b}
    )
    with pytest.raises(ValueError, match=match):
        check_frames(load_frames([a, b]))


def test_bad_frames_are_refused_with_one_line_each():
    good = _noise()
    cases = [
        ([good, _noise((128, 130))], "one shape"),
        ([good], "two or more sub-exposures"),
        ([good, np.full((128, 128), 7.0, np.float32)], "array 1 is constant"),
        ([good, np.where(np.arange(128)[:, None] < 80, np.nan, good)], "array 1 is 62% NaN"),
        ([good[:60], good[:60]], "at least 64 px"),
    ]
    for frames, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            check_frames(load_frames(frames))
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="exactly one frame"):
        check_frames(load_frames([good, good]), single=True)
    with pytest.raises(ValueError, match="not colour cubes"):
        load_frames([np.stack([good] * 3)])
    with pytest.raises(ValueError, match="at least 128 px"):  # a mosaic's planes are halves
        check_frames(load_frames([good[:100], good[:100]], bayer=True))


def test_split_planes_gives_each_colour_of_a_mosaic_its_own_plane():
    mosaic = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    planes = split_planes(mosaic, bayer=True)
    assert planes.shape == (4, 3, 4)
    np.testing.assert_array_equal(planes[0], mosaic[0::2, 0::2])
    np.testing.assert_array_equal(planes[1], mosaic[0::2, 1::2])
    np.testing.assert_array_equal(planes[2], mosaic[1::2, 0::2])
    np.testing.assert_array_equal(planes[3], mosaic[1::2, 1::2])


def test_white_noise_passes_and_smoothed_noise_is_refused():
    white = _noise((256, 256))
    assert abs(noise_correlation(white)) < 0.1
    (sub,) = load_frames([white])
    assert check_white_noise(sub) < 0.15
    smoothed = gaussian_filter(white - 100.0, 0.8) * 3 + 100.0
    assert noise_correlation(smoothed) > 0.3
    (sub,) = load_frames([smoothed])
    with pytest.raises(ValueError, match="spatially correlated noise"):
        check_white_noise(sub)


def test_a_debayered_looking_mosaic_is_refused_but_its_raw_planes_pass():
    rng = np.random.default_rng(1)
    raw = rng.normal(100.0, 10.0, (256, 256)).astype(np.float32)
    (sub,) = load_frames([raw], bayer="RGGB")
    check_white_noise(sub)  # each colour plane of a raw mosaic has white noise
    # an interpolated (debayered) green channel: every pixel mixes its neighbours
    interpolated = (raw + np.roll(raw, 1, 0) + np.roll(raw, 1, 1) + np.roll(raw, 1, (0, 1))) / 4
    (sub,) = load_frames([interpolated])
    with pytest.raises(ValueError, match="debayered, resampled or stacked"):
        check_white_noise(sub)
