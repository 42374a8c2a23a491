"""The FITS header widget: the header as text, RA/Dec under the cursor for a layer with a WCS."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from napari_astrodenoise._widgets._header import NO_WCS, sky_position


def _wcs_header(shape=(64, 64)) -> fits.Header:
    header = fits.Header()
    header.update(
        NAXIS=2,
        NAXIS1=shape[1],
        NAXIS2=shape[0],
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRVAL1=250.42,
        CRVAL2=36.46,
        CRPIX1=32.0,
        CRPIX2=32.0,
        CDELT1=-0.0003,
        CDELT2=0.0003,
        OBJECT="M13",
    )
    return header


def _add(viewer, flip, *, with_wcs=True):
    data = np.random.default_rng(0).normal(100, 3, (64, 64)).astype(np.float32)
    header = _wcs_header()
    meta = {"fits_header": header, "wcs": WCS(header) if with_wcs else None}
    return viewer.add_image(data, name="m13", metadata=meta, **flip(data.shape))


def test_the_header_is_shown_as_text(viewer, dock, flip):
    _add(viewer, flip)
    w = dock(viewer, "FITS header and sky position")
    assert "OBJECT  = 'M13     '" in w.header.value.splitlines()
    assert "CRVAL1" in w.header.value


def test_ra_dec_at_the_reference_pixel_through_the_flip(viewer, flip):
    layer = _add(viewer, flip)
    # FITS pixel (32, 32) is array (row 31, col 31); the reader's flip draws row r at y = 63 - r
    text = sky_position(layer, (63 - 31, 31))
    assert text.startswith("RA 16h41m40.8s  Dec +36d27m36")
    assert text.endswith("(x 32, y 32)")
    assert sky_position(layer, (500, 500)) is None  # off the image


def test_the_cursor_updates_the_sky_position(viewer, dock, flip):
    _add(viewer, flip)
    w = dock(viewer, "FITS header and sky position")
    viewer.cursor.position = (63 - 31, 31)
    assert w.position.value.startswith("RA 16h41m")


def test_a_layer_without_wcs_says_so(viewer, dock, flip):
    _add(viewer, flip, with_wcs=False)
    w = dock(viewer, "FITS header and sky position")
    assert w.position.value == NO_WCS
