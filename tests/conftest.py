"""Shared fixtures: the real FITS files beside the checkout and astropy's bundled M13 frames."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fits"


def _astropy_fits_data() -> Path:
    import astropy.io.fits.hdu.compressed as compressed

    return Path(compressed.__file__).parent / "tests" / "data"


@pytest.fixture(scope="session")
def shared_fits_dir() -> Path:
    """``../shared/data/fits`` beside the checkout; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real FITS data not found at {SHARED_DATA} (../shared/data beside the checkout)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def m13_dir() -> Path:
    """Folder holding astropy's bundled real M13 cutout and its compressed variants."""
    path = _astropy_fits_data()
    if not (path / "m13.fits").is_file():
        pytest.skip(f"astropy's bundled m13.fits not found under {path}")
    return path
