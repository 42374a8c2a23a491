"""napari writer glue: layer state -> FITS, axis order, header, WCS and provenance kept."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from napari_astrodenoise import __version__
from napari_astrodenoise._reader import read_fits_layers
from napari_astrodenoise._writer import write_fits_layer
from napari_astrodenoise.fits_io import WRITER_CHANGED_KEYWORDS, read_fits


def _meta(kwargs: dict) -> dict:
    """The parts of a layer state the writer reads, as napari would pass them."""
    return {
        "name": kwargs["name"],
        "metadata": kwargs["metadata"],
        "rgb": kwargs["rgb"],
        "multiscale": False,
    }


def _kept(header: fits.Header) -> list[tuple[str, object, str]]:
    return [
        (c.keyword, c.value, c.comment)
        for c in header.cards
        if c.keyword not in WRITER_CHANGED_KEYWORDS
        and not c.keyword.startswith("NAXIS")
        and c.keyword != "HISTORY"
    ]


def test_mono_layer_round_trips_bit_identical(crafted_fits, tmp_path):
    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["nonfinite"]))
    written = write_fits_layer(str(tmp_path / "out.fits"), data, _meta(kwargs))
    assert written == [str(tmp_path / "out.fits")]
    [back] = read_fits(written[0])
    np.testing.assert_array_equal(back.data.view(np.uint32), data.view(np.uint32))
    assert _kept(back.header) == _kept(kwargs["metadata"]["fits_header"])
    history = list(back.header["HISTORY"])
    assert history[0].startswith(f"napari-astrodenoise {__version__} wrote this file on")
    assert history[1] == "saved from napari layer 'nonfinite'"


def test_rgb_layer_is_written_with_colour_along_naxis3(crafted_fits, tmp_path):
    path = crafted_fits["cube3"]
    [(data, kwargs, _)] = read_fits_layers(str(path))
    assert data.shape == (8, 10, 3)
    [out] = write_fits_layer(str(tmp_path / "rgb.fits"), data, _meta(kwargs))
    header = fits.getheader(out)
    assert (header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (10, 8, 3)
    np.testing.assert_array_equal(fits.getdata(out), fits.getdata(path))


def test_stack_layer_keeps_its_plane_axis_first(crafted_fits, tmp_path):
    path = crafted_fits["cube5"]
    [(data, kwargs, _)] = read_fits_layers(str(path))
    [out] = write_fits_layer(str(tmp_path / "stack.fits"), data, _meta(kwargs))
    assert fits.getheader(out)["NAXIS3"] == 5
    np.testing.assert_array_equal(fits.getdata(out), fits.getdata(path))


def test_denoise_provenance_in_metadata_becomes_cards_and_history(crafted_fits, tmp_path):
    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["with_wcs"]))
    meta = _meta(kwargs)
    meta["metadata"] = {
        **kwargs["metadata"],
        "astrodenoise": {
            "provenance": {"ADNMODEL": ("resunet-s", "denoising model")},
            "history": ["denoised: tile 256, overlap 32"],
        },
    }
    [out] = write_fits_layer(str(tmp_path / "d.fits"), data, meta)
    header = fits.getheader(out)
    assert (header["ADNMODEL"], header.comments["ADNMODEL"]) == ("resunet-s", "denoising model")
    assert list(header["HISTORY"])[-1] == "denoised: tile 256, overlap 32"
    assert header["CTYPE1"] == "RA---TAN" and header["CRVAL2"] == 36.46


def test_wcs_without_a_header_is_written_as_wcs_cards(crafted_fits, tmp_path):
    [image] = read_fits(crafted_fits["with_wcs"])
    meta = {"name": "x", "rgb": False, "metadata": {"wcs": image.wcs}}
    [out] = write_fits_layer(str(tmp_path / "w.fits"), image.data, meta)
    [back] = read_fits(out)
    assert back.wcs is not None
    np.testing.assert_allclose(
        back.wcs.pixel_to_world_values(3.0, 7.0), image.wcs.pixel_to_world_values(3.0, 7.0)
    )


def test_plain_layer_without_metadata_is_saved_as_float32(tmp_path):
    data = np.arange(20, dtype=np.uint8).reshape(4, 5)
    [out] = write_fits_layer(str(tmp_path / "p.fits"), data, {"name": "p", "metadata": {}})
    assert fits.getheader(out)["BITPIX"] == -32
    np.testing.assert_array_equal(fits.getdata(out), data)


def test_multiscale_layer_writes_its_full_resolution_level(tmp_path):
    levels = [np.ones((8, 8), np.float32), np.zeros((4, 4), np.float32)]
    meta = {"name": "m", "multiscale": True, "metadata": {}}
    [out] = write_fits_layer(str(tmp_path / "m.fits"), levels, meta)
    assert fits.getdata(out).shape == (8, 8)


def test_saving_over_an_existing_file_replaces_it(tmp_path):
    path = tmp_path / "o.fits"
    path.write_bytes(b"old")
    write_fits_layer(str(path), np.ones((2, 3)), {"name": "o", "metadata": {}})
    np.testing.assert_array_equal(fits.getdata(path), 1)


# --------------------------------------------------------------------------- XISF and TIFF


def test_xisf_layer_saves_as_xisf_with_keywords_properties_and_icc(shared_formats_dir, tmp_path):
    from napari_astrodenoise._writer import write_xisf_layer
    from napari_astrodenoise.xisf_io import read_xisf

    source = shared_formats_dir / "ic410_lrgb_f32_pixinsight.xisf"
    [(data, kwargs, _)] = read_fits_layers(str(source))
    assert data.shape == (406, 616, 3)
    [out] = write_xisf_layer(str(tmp_path / "saved.xisf"), data, _meta(kwargs))
    [back] = read_xisf(out)
    [image] = read_xisf(source)
    np.testing.assert_array_equal(back.data, image.data)
    assert back.header["OBJECT"] == "IC410"
    assert back.format_info["icc_profile"] == image.format_info["icc_profile"]
    assert "PixInsight:ProcessingHistory" in back.format_info["properties"]
    assert "saved from napari layer" in back.format_info["properties"]["Processing:History"].value


def test_fits_layer_saves_as_tiff_and_xisf_the_right_way_up(crafted_fits, tmp_path):
    import tifffile

    from napari_astrodenoise._writer import write_tiff_layer, write_xisf_layer
    from napari_astrodenoise.image_io import read_image

    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["with_wcs"]))
    for writer, name in ((write_tiff_layer, "a.tif"), (write_xisf_layer, "a.xisf")):
        [out] = writer(str(tmp_path / name), data, _meta(kwargs))
        [back] = read_image(out)
        np.testing.assert_array_equal(back.data, data)
        assert back.wcs is not None and back.header["CRVAL1"] == 250.42
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), data[::-1])


def test_stack_layer_is_refused_by_xisf_and_tiff(crafted_fits, tmp_path):
    import pytest

    from napari_astrodenoise._writer import write_tiff_layer, write_xisf_layer

    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["cube5"]))
    for writer, name in ((write_tiff_layer, "s.tif"), (write_xisf_layer, "s.xisf")):
        with pytest.raises(ValueError, match="write a stack as FITS"):
            writer(str(tmp_path / name), data, _meta(kwargs))
    assert list(tmp_path.iterdir()) == []
