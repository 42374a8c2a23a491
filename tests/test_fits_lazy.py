"""Lazy FITS reading: dask arrays of row blocks that equal the eager read bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import napari_astrodenoise.fits_lazy as fits_lazy
from napari_astrodenoise._reader import read_image_layers
from napari_astrodenoise.fits_io import read_fits

da = pytest.importorskip("dask.array")


def _scaled_ints(shape, dtype, *, bscale=1.0, bzero=0.0, blank=None, seed=0):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    raw = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = bscale
    hdu.header["BZERO"] = bzero
    if blank is not None:
        raw.flat[::7] = blank
        hdu.header["BLANK"] = blank
    return hdu


def _cases(tmp_path):
    rng = np.random.default_rng(1)
    floats = rng.normal(size=(37, 53)).astype(np.float32)
    floats[3, 4], floats[5, 6], floats[7, 8] = np.nan, np.inf, -np.inf
    cases = {
        "float32": fits.PrimaryHDU(floats),
        "float64": fits.PrimaryHDU(rng.normal(size=(29, 31))),
        "int16_scaled_blank": _scaled_ints(
            (41, 23), np.int16, bscale=0.37, bzero=-12.5, blank=-32768
        ),
        "uint16_as_int16": _scaled_ints((33, 17), np.int16, bzero=32768.0),
        "int32_blank": _scaled_ints((19, 45), np.int32, bscale=2.5e-3, blank=7),
        "uint8": _scaled_ints((21, 21), np.uint8, bzero=-128.0, blank=255),
        "cube": fits.PrimaryHDU(rng.normal(size=(3, 25, 27)).astype(np.float32)),
    }
    paths = {}
    for name, hdu in cases.items():
        # astropy would scale on writing; keep the raw integers as they are
        hdul = fits.HDUList([hdu])
        paths[name] = tmp_path / f"{name}.fits"
        hdul.writeto(paths[name], output_verify="silentfix")
    return paths


@pytest.mark.parametrize("block_bytes", [1 << 8, 1 << 30])
def test_lazy_read_equals_eager_bit_for_bit(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(fits_lazy, "LAZY_BLOCK_BYTES", block_bytes)
    for name, path in _cases(tmp_path).items():
        eager = read_fits(path)[0].data
        lazy = read_fits(path, lazy=True)[0].data
        assert isinstance(lazy, da.Array), name
        assert lazy.dtype == np.float32 and lazy.shape == eager.shape, name
        np.testing.assert_array_equal(lazy.compute(), eager, err_msg=name, strict=True)
        # strided and reversed reads (a zoomed-out view, a statistics sample)
        key = (..., slice(None, None, 3), slice(1, None, 2))
        np.testing.assert_array_equal(lazy[key].compute(), eager[key], err_msg=name)
        np.testing.assert_array_equal(lazy[..., ::-2, :].compute(), eager[..., ::-2, :])


def test_scaled_integers_and_blank_are_really_exercised(tmp_path):
    path = _cases(tmp_path)["int16_scaled_blank"]
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].data.dtype.kind == "i" and hdul[0].header["BLANK"] == -32768
    lazy = read_fits(path, lazy=True)[0].data.compute()
    assert np.isnan(lazy).sum() == np.isnan(read_fits(path)[0].data).sum() > 0


def test_lazy_blocks_are_whole_rows_of_every_plane(tmp_path, monkeypatch):
    monkeypatch.setattr(fits_lazy, "LAZY_BLOCK_BYTES", 3 * 27 * 4 * 5)
    lazy = read_fits(_cases(tmp_path)["cube"], lazy=True)[0].data
    assert lazy.chunks[0] == (3,) and lazy.chunks[2] == (27,)
    assert set(lazy.chunks[1][:-1]) == {5}


def test_compressed_files_are_read_eagerly_even_when_lazy(tmp_path):
    path = tmp_path / "packed.fits.gz"
    fits.PrimaryHDU(np.ones((8, 9), np.float32)).writeto(path)
    assert isinstance(read_fits(path, lazy=True)[0].data, np.ndarray)


def test_reader_opens_large_files_lazily_and_small_ones_as_numpy(tmp_path, monkeypatch):
    import napari_astrodenoise._reader as reader

    path = tmp_path / "big.fits"
    data = np.random.default_rng(2).normal(size=(300, 260)).astype(np.float32)
    fits.PrimaryHDU(data).writeto(path)
    assert isinstance(read_image_layers(path)[0][0], np.ndarray)
    monkeypatch.setattr(reader, "LAZY_READ_BYTES", 100_000)
    monkeypatch.setattr(reader, "PYRAMID_SIDE", 128)
    levels, kwargs, _ = read_image_layers(path)[0]
    assert kwargs["multiscale"] is True
    assert all(isinstance(level, da.Array) for level in levels)
    assert [level.shape for level in levels] == [(300, 260), (150, 130), (75, 65)]
    np.testing.assert_array_equal(levels[1].compute(), data[::2, ::2])
    np.testing.assert_array_equal(levels[2].compute(), data[::4, ::4])
    monkeypatch.setattr(reader, "LAZY_READ_BYTES", 1 << 40)  # eager: the same limits
    assert read_image_layers(path)[0][1]["contrast_limits"] == kwargs["contrast_limits"]
    assert kwargs["contrast_limits"][0] < kwargs["contrast_limits"][1]


def test_strided_views_read_only_their_rows(tmp_path, monkeypatch):
    path = _cases(tmp_path)["int16_scaled_blank"]
    image = read_fits(path, lazy=True)[0]
    eager = read_fits(path)[0].data
    for step in (2, 3, 7):
        np.testing.assert_array_equal(
            image.lazy_rows.strided(step)[:, :], eager[::step, ::step], strict=True
        )
    np.testing.assert_array_equal(
        fits_lazy.lazy_image(image.lazy_rows.strided(3), 64).compute(), eager[::3, ::3]
    )
    maps, reads = [], []
    real_map, real_read = np.memmap, fits_lazy.FitsRows._read_rows

    def spy_map(*args, **kwargs):
        maps.append(kwargs["shape"][0])
        return real_map(*args, **kwargs)

    def spy_read(self, rows):
        reads.append(len(rows))
        return real_read(self, rows)

    monkeypatch.setattr(fits_lazy.np, "memmap", spy_map)
    monkeypatch.setattr(fits_lazy.FitsRows, "_read_rows", spy_read)
    image.lazy_rows.strided(10)[:, :]
    assert (maps, reads) == ([], [5])  # rows 0, 10, .. 40 read, none mapped between
    image.lazy_rows[4:9, :]
    assert (maps, reads) == ([5], [5])  # a run of rows is mapped
