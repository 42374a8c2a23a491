"""read_image and write_image: the format found by content first, then by name."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from napari_astrodenoise.fits_io import FitsReadError, ImageReadError
from napari_astrodenoise.image_io import detect_format, format_of_name, read_image, write_image
from napari_astrodenoise.tiff_io import TiffReadError
from napari_astrodenoise.xisf_io import XisfProperty, XisfReadError


@pytest.fixture
def one_of_each(tmp_path):
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    paths = {
        "fits": write_image(tmp_path / "a.fits", data),
        "xisf": write_image(tmp_path / "a.xisf", data),
        "tiff": write_image(tmp_path / "a.tif", data),
    }
    return data, paths


def test_each_format_reads_back_the_same_array(one_of_each):
    data, paths = one_of_each
    for name, path in paths.items():
        [image] = read_image(path)
        assert image.file_format == name
        np.testing.assert_array_equal(image.data, data)


def test_content_wins_over_a_wrong_name(one_of_each, tmp_path):
    _, paths = one_of_each
    for name, path in paths.items():
        renamed = tmp_path / f"misnamed_{name}.fits"
        shutil.copy(path, renamed)
        assert detect_format(renamed) == name
        assert read_image(renamed)[0].file_format == name


def test_gzip_fits_is_found_by_name(tmp_path):
    fits.PrimaryHDU(np.ones((3, 3), np.float32)).writeto(tmp_path / "z.fits.gz")
    assert detect_format(tmp_path / "z.fits.gz") == "fits"
    assert read_image(tmp_path / "z.fits.gz")[0].data.shape == (3, 3)


@pytest.mark.parametrize(
    ("name", "error"),
    [("gone.fits", FitsReadError), ("gone.xisf", XisfReadError), ("gone.tiff", TiffReadError)],
)
def test_missing_files_get_their_format_error(tmp_path, name, error):
    with pytest.raises(error, match="no such file"):
        read_image(tmp_path / name)


def test_unknown_content_and_name_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match="neither its first bytes nor its name"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.FITS", "fits"), ("a.fz", "fits"), ("a.XISF", "xisf"), ("a.TIF", "tiff"), ("a.png", None)],
)
def test_format_of_name(name, expected):
    assert format_of_name(name) == expected


def test_write_image_needs_a_format(tmp_path):
    with pytest.raises(ValueError, match="cannot tell which format"):
        write_image(tmp_path / "out.dat", np.zeros((2, 2), np.float32))
    out = write_image(tmp_path / "out.dat", np.zeros((2, 2), np.float32), file_format="tiff")
    assert tifffile.imread(out).shape == (2, 2)


def test_xisf_properties_and_icc_travel_through_write_image(tmp_path):
    info = {
        "properties": {"Observation:Object:Name": XisfProperty("String", "M 57")},
        "icc_profile": b"\x00" * 36 + b"acsp" + b"\x01" * 20,
    }
    out = write_image(tmp_path / "p.xisf", np.ones((3, 3), np.float32), format_info=info)
    [back] = read_image(out)
    assert back.format_info["properties"]["Observation:Object:Name"].value == "M 57"
    assert back.format_info["icc_profile"] == info["icc_profile"]
