"""fits_io: physical float32 data, header and WCS kept, clear errors, faithful atomic writes."""

from __future__ import annotations

import gzip
import pickle
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import __version__
from napari_astrodenoise.fits_io import (
    WRITER_CHANGED_KEYWORDS,
    FitsReadError,
    default_contrast_limits,
    fits_stem,
    layer_metadata,
    read_fits,
    write_fits,
)

# name in ../shared/data/fits -> (kind, shape, bayer pattern, has celestial WCS)
SHARED = {
    "train/m51_kpno_b600s.fits": ("mono", (512, 512), None, False),
    "train/m67_dss_poss1.fits": ("mono", (1059, 1059), None, False),
    "train/ngc6976_sdss_g_reproj.fits": ("mono", (496, 682), None, True),
    "train/ngc6976_sdss_irg_rgbcube.fits": ("rgb", (3, 496, 682), None, False),
    "eval/horsehead_dss_uks.fits": ("mono", (893, 891), None, True),
    "eval/m2field_sdss_frame_r_2048x1489.fits": ("mono", (1489, 2048), None, True),
    "eval/m13_raw_light_5s.fits": ("mono", (1040, 1392), None, False),
    "eval/ngc7023_seestar_raw_bayer_10s.fits": ("mono", (1920, 1080), "GRBG", True),
}
M13 = ("m13.fits", "m13_rice.fits", "m13_gzip.fits", "m13_hcomp.fits", "m13_plio.fits")
BROKEN_REASON = {
    "truncated": "truncated",
    "table_only": "no 2-D or 3-D image",
    "one_d": "1-D image",
    "zero_shape": "zero size",
    "empty": "empty",
    "garbage": "not a valid FITS file",
}


def _bits(array: np.ndarray) -> np.ndarray:
    """float32 pixels as integers, so NaN payloads and -0.0 compare exactly."""
    assert array.dtype == np.float32
    return np.ascontiguousarray(array).view(np.uint32)


def _kept_cards(header: fits.Header) -> list[tuple[str, object, str]]:
    """Cards the writer promises to keep (all but the documented ones and HISTORY)."""
    return [
        (card.keyword, card.value, card.comment)
        for card in header.cards
        if card.keyword not in WRITER_CHANGED_KEYWORDS
        and not re.fullmatch(r"NAXIS\d+", card.keyword)
        and card.keyword != "HISTORY"
    ]


def _assert_round_trip(source: fits.Header, image_back, data: np.ndarray) -> None:
    np.testing.assert_array_equal(_bits(image_back.data), _bits(data))
    assert _kept_cards(image_back.header) == _kept_cards(source)
    history_in = list(source.get("HISTORY", []))
    history_out = list(image_back.header.get("HISTORY", []))
    assert history_out[: len(history_in)] == history_in
    assert f"napari-astrodenoise {__version__}" in history_out[len(history_in)]
    assert image_back.header["BITPIX"] == -32
    for keyword in ("BSCALE", "BZERO", "BLANK"):
        assert keyword not in image_back.header


def _only(path) -> object:
    images = read_fits(path)
    assert len(images) == 1
    return images[0]


# --------------------------------------------------------------------------- reading


def test_scaled_integers_become_physical_float32_and_blank_becomes_nan(crafted_fits):
    path = crafted_fits["scaled_int16"]
    raw = fits.getdata(path, do_not_scale_image_data=True).astype(np.float64)
    image = _only(path)
    assert image.data.dtype == np.float32 and image.data.dtype.isnative
    expected = (100.0 + 0.5 * raw).astype(np.float32)
    expected[2, 3] = np.nan
    np.testing.assert_array_equal(image.data, expected)
    assert np.isnan(image.data).sum() == 1
    # the header is the file's, scaling cards included, although the data are scaled
    assert image.header["BZERO"] == 100.0 and image.header["BSCALE"] == 0.5


def test_pseudo_unsigned_16_bit_reads_exactly(crafted_fits):
    image = _only(crafted_fits["bayer"])
    assert fits.getheader(crafted_fits["bayer"])["BZERO"] == 32768
    np.testing.assert_array_equal(image.data, np.arange(96, dtype=np.float32).reshape(8, 12))


def test_nan_and_both_infinities_are_kept(crafted_fits):
    data = _only(crafted_fits["nonfinite"]).data
    assert np.isnan(data[0, 0])
    assert data[1, 2] == np.inf and data[4, 7] == -np.inf
    assert np.isfinite(data).sum() == data.size - 3


def test_big_endian_float64_becomes_native_float32(crafted_fits):
    path = crafted_fits["float64"]
    with fits.open(path) as hdul:
        assert hdul[0].data.dtype.byteorder == ">"
        expected = hdul[0].data.astype(np.float32)
    data = _only(path).data
    assert data.dtype == np.float32 and data.dtype.isnative
    np.testing.assert_array_equal(data, expected)


def test_every_2d_image_hdu_is_read_and_named_by_extname(crafted_fits):
    images = read_fits(crafted_fits["mef"])
    assert [(i.name, i.hdu_index, i.extname) for i in images] == [
        ("mef[SCI]", 1, "SCI"),
        ("mef[ERR]", 2, "ERR"),
    ]  # empty primary, the table and the 1-D vector are skipped
    np.testing.assert_array_equal(images[1].data - images[0].data, 1000)
    assert images[0].header["XTENSION"] == "IMAGE"


def test_extension_without_extname_is_named_by_index(tmp_path):
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones((3, 4))), fits.ImageHDU(np.zeros((3, 4)))]).writeto(path)
    assert [i.name for i in read_fits(path)] == ["two[0]", "two[1]"]


@pytest.mark.parametrize(
    ("key", "kind", "shape"),
    [("cube3", "rgb", (3, 8, 10)), ("cube5", "stack", (5, 8, 10)), ("plane1", "mono", (8, 10))],
)
def test_cube_depth_decides_kind_and_axis_order_is_the_files(crafted_fits, key, kind, shape):
    path = crafted_fits[key]
    image = _only(path)
    assert (image.kind, image.data.shape) == (kind, shape)
    np.testing.assert_array_equal(image.data, fits.getdata(path).reshape(shape))


@pytest.mark.parametrize("key", ["gzipped", "tiled"])
def test_gzip_and_tile_compressed_files_read_like_plain_ones(crafted_fits, key):
    path = crafted_fits[key]
    image = _only(path)
    expected = np.arange(image.data.size, dtype=np.float32).reshape(image.data.shape)
    np.testing.assert_array_equal(image.data, expected)
    assert image.name == key  # ".fits.gz" and ".fits.fz" both stripped
    assert image.hdu_index == (1 if key == "tiled" else 0)


def test_bayer_frame_reads_as_mono_mosaic_with_its_pattern(crafted_fits):
    image = _only(crafted_fits["bayer"])
    assert (image.kind, image.data.shape, image.bayer_pattern) == ("mono", (8, 12), "RGGB")
    assert layer_metadata(image)["bayer_pattern"] == "RGGB"


def test_celestial_wcs_travels_with_the_image(crafted_fits):
    image = _only(crafted_fits["with_wcs"])
    assert image.wcs is not None and image.wcs.has_celestial
    sky = image.wcs.pixel_to_world(14, 9)  # CRPIX is 1-based
    assert sky.ra.deg == pytest.approx(250.42) and sky.dec.deg == pytest.approx(36.46)
    assert _only(crafted_fits["nonfinite"]).wcs is None


def test_layer_metadata_has_the_shared_keys(crafted_fits):
    image = read_fits(crafted_fits["mef"])[1]
    meta = layer_metadata(image)
    assert meta == {
        "fits_header": image.header,
        "wcs": None,
        "source_path": str(crafted_fits["mef"]),
        "hdu_index": 2,
        "extname": "ERR",
        "bayer_pattern": None,
        "fits_kind": "mono",
        "file_format": "fits",
        "format_info": {},
    }


def test_broken_file_gives_one_error_naming_file_and_reason(broken_fits):
    with pytest.raises(FitsReadError) as info:
        read_fits(broken_fits)
    message = str(info.value)
    assert str(broken_fits) in message
    assert BROKEN_REASON[broken_fits.stem] in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("key", ["gzipped", "tiled"])
def test_truncated_compressed_files_are_reported_as_truncated(crafted_fits, tmp_path, key):
    blob = crafted_fits[key].read_bytes()
    cut = tmp_path / crafted_fits[key].name
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(FitsReadError, match="truncated") as info:
        read_fits(cut)
    assert str(cut) in str(info.value)


def test_missing_file_is_a_fits_read_error(tmp_path):
    with pytest.raises(FitsReadError, match="no such file"):
        read_fits(tmp_path / "nowhere.fits")


def test_fits_read_error_survives_pickling():
    error = pickle.loads(pickle.dumps(FitsReadError("a.fits", "truncated")))
    assert (error.path, error.reason, str(error)) == (
        "a.fits",
        "truncated",
        "Cannot open FITS file 'a.fits': truncated",
    )


@pytest.mark.parametrize("scaled", [False, True], ids=["float32", "int16-bscale"])
def test_2048_square_image_reads_without_a_second_full_copy(tmp_path, scaled):
    path = tmp_path / "big.fits"
    if scaled:
        hdu = fits.PrimaryHDU(np.full((2048, 2048), 7, dtype=np.int16))
        hdu.header.update(BSCALE=0.25, BZERO=3.0)
    else:
        hdu = fits.PrimaryHDU(np.full((2048, 2048), 1.5, dtype=np.float32))
    hdu.writeto(path)
    tracemalloc.start()
    try:
        image = _only(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    nbytes = image.data.nbytes
    assert nbytes == 2048 * 2048 * 4
    assert peak < 1.25 * nbytes, f"peak {peak / nbytes:.2f} x the array"
    assert image.data[1000, 1000] == (4.75 if scaled else 1.5)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_real_files_read_as_astropy_scales_them(shared_fits_dir, name):
    kind, shape, bayer, has_wcs = SHARED[name]
    path = shared_fits_dir / name
    image = _only(path)
    assert (image.kind, image.data.shape, image.bayer_pattern) == (kind, shape, bayer)
    assert (image.wcs is not None) == has_wcs
    assert image.data.dtype == np.float32 and image.data.dtype.isnative
    expected = fits.getdata(path).astype(np.float32)  # astropy's own scaling as oracle
    np.testing.assert_array_equal(image.data, expected)


@pytest.mark.parametrize("name", M13)
def test_m13_plain_and_compressed_read_identically(m13_dir, name):
    image = _only(m13_dir / name)
    reference = fits.getdata(m13_dir / "m13.fits").astype(np.float32)
    np.testing.assert_array_equal(image.data, reference)
    assert image.wcs is not None and image.name == Path(name).stem


def test_fits_stem_strips_compression_suffixes():
    assert [fits_stem(n) for n in ("a.fits.gz", "b.FIT", "c.fits.fz", "d.fz", "e.x.fts")] == [
        "a",
        "b",
        "c",
        "d",
        "e.x",
    ]


def test_default_contrast_limits_ignore_nan_and_inf():
    data = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(100, 100)
    data[0, :10] = np.nan
    data[1, :10] = np.inf
    low, high = default_contrast_limits(data)
    assert 0 <= low < 10 and 990 < high <= 1000
    assert default_contrast_limits(np.full((4, 4), np.nan, np.float32)) is None


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "key", ["scaled_int16", "nonfinite", "float64", "mef", "cube3", "cube5", "tiled", "with_wcs"]
)
def test_crafted_round_trip_is_bit_identical_with_the_same_cards(crafted_fits, tmp_path, key):
    for image in read_fits(crafted_fits[key]):
        out = tmp_path / f"{image.name}.fits"
        axis = 0 if image.data.ndim == 3 else None
        write_fits(out, image.data, header=image.header, channel_axis=axis)
        _assert_round_trip(image.header, _only(out), image.data)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_real_files_round_trip(shared_fits_dir, tmp_path, name):
    image = _only(shared_fits_dir / name)
    out = write_fits(
        tmp_path / "out.fits",
        image.data,
        header=image.header,
        channel_axis=0 if image.kind == "rgb" else None,
    )
    back = _only(out)
    _assert_round_trip(image.header, back, image.data)
    assert back.bayer_pattern == image.bayer_pattern and back.kind == image.kind


@pytest.mark.parametrize("name", M13)
def test_m13_round_trip_rewrites_a_valid_checksum(m13_dir, tmp_path, name):
    image = _only(m13_dir / name)
    assert "CHECKSUM" in image.header
    out = write_fits(tmp_path / "m13.fits", image.data, header=image.header)
    _assert_round_trip(image.header, _only(out), image.data)
    with fits.open(out, checksum=True) as hdul:  # raises/warns on a stale checksum
        assert hdul[0].header["CHECKSUM"] != image.header["CHECKSUM"]


def test_no_checksum_is_added_when_the_source_had_none(crafted_fits, tmp_path):
    image = _only(crafted_fits["nonfinite"])
    out = write_fits(tmp_path / "o.fits", image.data, header=image.header)
    assert "CHECKSUM" not in fits.getheader(out) and "DATASUM" not in fits.getheader(out)


def test_written_data_are_not_scaled_again_by_other_readers(crafted_fits, tmp_path):
    image = _only(crafted_fits["scaled_int16"])  # header still says BZERO 100, BSCALE 0.5
    out = write_fits(tmp_path / "o.fits", image.data, header=image.header)
    np.testing.assert_array_equal(fits.getdata(out), image.data)


def test_trailing_blank_cards_are_kept(tmp_path):
    header = fits.Header([("OBSERVER", "me")])
    for _ in range(3):
        header.append(fits.Card("", ""), useblanks=False, bottom=True, end=True)
    out = write_fits(tmp_path / "o.fits", np.ones((4, 5), np.float32), header=header)
    kept = _kept_cards(fits.getheader(out))
    assert kept == [("OBSERVER", "me", ""), ("", "", ""), ("", "", ""), ("", "", "")]


def test_provenance_cards_and_history_lines_are_written(tmp_path):
    header = fits.Header([("OBJECT", "M13"), ("ADNMODEL", "old", "to be replaced")])
    out = write_fits(
        tmp_path / "o.fits",
        np.zeros((4, 5), np.float32),
        header=header,
        provenance={
            "ADNMODEL": ("resunet-s", "model name"),
            "adnsigma": 1.5,
            "ADNSEED": np.int64(3),
        },
        history=["denoised with tile 256", "x" * 100],
    )
    written = fits.getheader(out)
    assert (written["ADNMODEL"], written.comments["ADNMODEL"]) == ("resunet-s", "model name")
    assert written["ADNSIGMA"] == 1.5 and written["ADNSEED"] == 3
    assert list(written.keys()).index("ADNMODEL") < list(written.keys()).index("HISTORY")
    history = list(written["HISTORY"])
    assert re.fullmatch(
        rf"napari-astrodenoise {re.escape(__version__)} wrote this file on "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        history[0],
    )
    assert history[1] == "denoised with tile 256"
    assert "".join(history[2:]) == "x" * 100  # a long line continues on more cards
    assert header["ADNMODEL"] == "old"  # the caller's header is left alone


@pytest.mark.parametrize(
    "provenance",
    [{"TOOLONGKEY": 1}, {"BITPIX": 8}, {"HISTORY": "x"}, {"BAD KEY": 1}, {"OK": [1, 2]},
     {"OK": float("nan")}],
    ids=["long", "structural", "history", "space", "list", "nan"],
)  # fmt: skip
def test_invalid_provenance_is_refused_before_any_file_is_made(tmp_path, provenance):
    with pytest.raises(ValueError, match="provenance"):
        write_fits(tmp_path / "o.fits", np.ones((3, 3)), provenance=provenance)
    assert list(tmp_path.iterdir()) == []


def test_text_outside_ascii_is_escaped_in_provenance_and_history(tmp_path):
    name = "Jérôme/NGC 7000 Ha.fits\tß"
    out = write_fits(
        tmp_path / "o.fits",
        np.ones((3, 3)),
        provenance={"ADINPUT": (name, "input file")},
        history=[f"input: {name}"],
    )
    header = fits.getheader(out)
    assert header["ADINPUT"] == "J\\xe9r\\xf4me/NGC 7000 Ha.fits\\t\\xdf"
    assert header["ADINPUT"].encode("ascii").decode("unicode_escape") == name
    assert f"input: {header['ADINPUT']}" in [str(h) for h in header["HISTORY"]]


@pytest.mark.parametrize("axis", [0, -1])
def test_colour_channel_axis_becomes_naxis3(tmp_path, axis):
    planes = np.stack([np.full((4, 6), k, np.float32) for k in (1.0, 2.0, 3.0)])
    data = planes if axis == 0 else np.moveaxis(planes, 0, -1)
    out = write_fits(tmp_path / "rgb.fits", data, channel_axis=axis)
    header = fits.getheader(out)
    assert (header["NAXIS"], header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (3, 6, 4, 3)
    np.testing.assert_array_equal(fits.getdata(out), planes)
    assert _only(out).kind == "rgb"


@pytest.mark.parametrize(
    ("shape", "axis", "match"),
    [((3, 4, 5), None, "needs channel_axis"), ((4, 5), 0, "must be None"),
     ((2, 3, 4, 5), 0, "2-D"), ((3, 4, 5), 3, "-3..2"), ((0, 5), None, "empty")],
)  # fmt: skip
def test_bad_shapes_and_axes_are_refused_clearly(tmp_path, shape, axis, match):
    with pytest.raises(ValueError, match=match):
        write_fits(tmp_path / "o.fits", np.zeros(shape), channel_axis=axis)


def test_integer_input_is_written_as_float32(tmp_path):
    out = write_fits(tmp_path / "o.fits", np.arange(12, dtype=np.int32).reshape(3, 4))
    assert fits.getheader(out)["BITPIX"] == -32
    np.testing.assert_array_equal(fits.getdata(out), np.arange(12).reshape(3, 4))


def test_existing_file_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "o.fits"
    write_fits(path, np.ones((3, 3)))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_fits(path, np.zeros((3, 3)))
    assert path.read_bytes() == before
    write_fits(path, np.zeros((3, 3)), overwrite=True)
    np.testing.assert_array_equal(fits.getdata(path), 0)


def test_failed_write_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "o.fits"
    write_fits(path, np.ones((3, 3)))
    before = path.read_bytes()

    def crash_midway(self, fileobj, **kwargs):
        Path(fileobj).write_bytes(b"SIMPLE  =   half a header")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        write_fits(path, np.zeros((3, 3)), overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["o.fits"]  # no temporary left


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "o.fits"
    write_fits(path, np.ones((3, 3)))
    path.chmod(0o640)
    write_fits(path, np.zeros((3, 3)), overwrite=True)
    assert path.stat().st_mode & 0o777 == 0o640


def test_gz_name_writes_gzip_and_fz_is_refused(tmp_path):
    out = write_fits(tmp_path / "o.fits.gz", np.arange(6.0).reshape(2, 3))
    with gzip.open(out) as handle:
        assert handle.read(6) == b"SIMPLE"
    np.testing.assert_array_equal(_only(out).data, np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match=r"\.fz"):
        write_fits(tmp_path / "o.fits.fz", np.ones((2, 3)))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_fits(tmp_path / "no" / "o.fits", np.ones((2, 3)))
