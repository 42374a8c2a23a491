"""TIFF in and out: astro TIFFs taken in ADU and the right way up, others left to napari."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from napari_astrodenoise.tiff_io import (
    TiffReadError,
    description_header,
    is_astro_tiff,
    read_tiff,
    write_tiff,
)
from napari_astrodenoise.xisf_io import read_xisf

WCS_CARDS = {
    "CTYPE1": "RA---TAN",
    "CTYPE2": "DEC--TAN",
    "CRPIX1": 3.0,
    "CRPIX2": 2.0,
    "CRVAL1": 83.82,
    "CRVAL2": -5.39,
    "CDELT1": -0.0005,
    "CDELT2": 0.0005,
}


def _ramp(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape).astype(dtype)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_mono_tiff_reads_in_adu_with_rows_in_fits_order(tmp_path, dtype):
    top_down = _ramp((5, 7), dtype) * (1000 if dtype == "uint16" else 1)
    tifffile.imwrite(tmp_path / "m.tif", top_down)
    [image] = read_tiff(tmp_path / "m.tif")
    assert image.data.dtype == np.float32 and image.kind == "mono"
    np.testing.assert_array_equal(image.data, top_down[::-1].astype(np.float32))
    assert image.file_format == "tiff"
    if dtype != "float32":
        assert image.data.max() == float(top_down.max())  # no rescaling to 0-1
        assert "not rescaled" in image.format_info["scaling"]


@pytest.mark.parametrize("planar", [False, True])
def test_rgb_tiff_interleaved_or_planar_reads_as_three_planes(tmp_path, planar):
    planes = _ramp((3, 4, 6), "uint16")
    if planar:
        tifffile.imwrite(tmp_path / "c.tiff", planes, photometric="rgb", planarconfig="separate")
    else:
        tifffile.imwrite(tmp_path / "c.tiff", planes.transpose(1, 2, 0), photometric="rgb")
    [image] = read_tiff(tmp_path / "c.tiff")
    assert image.kind == "rgb"
    np.testing.assert_array_equal(image.data, planes[:, ::-1, :].astype(np.float32))


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [
        (1, lambda a: a[::-1]),
        (2, lambda a: a[::-1, ::-1]),
        (3, lambda a: a[:, ::-1]),
        (4, lambda a: a),
    ],
)
def test_orientation_tag_is_honoured(tmp_path, orientation, turn):
    stored = _ramp((4, 5), "float32")
    tifffile.imwrite(tmp_path / "o.tif", stored, extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_array_equal(read_tiff(tmp_path / "o.tif")[0].data, turn(stored))


def test_transposed_orientation_is_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "t.tif", _ramp((4, 5), "float32"), extratags=[(274, "H", 1, 6, True)]
    )
    with pytest.raises(TiffReadError, match="orientation 6"):
        read_tiff(tmp_path / "t.tif")


@pytest.mark.parametrize("separator", ["\n", ""])
def test_fits_header_in_the_description_is_parsed_with_its_wcs(tmp_path, separator):
    header = fits.Header({"OBJECT": "M 42", "EXPTIME": 120.0, **WCS_CARDS})
    header.add_history("stacked in Siril")
    cards = [str(card) for card in header.cards] + ["END"]
    description = separator.join(c if separator == "" else c.rstrip() for c in cards)
    tifffile.imwrite(
        tmp_path / "h.tif", _ramp((4, 6), "float32"), description=description, metadata=None
    )
    [image] = read_tiff(tmp_path / "h.tif")
    assert image.header["OBJECT"] == "M 42" and image.header["EXPTIME"] == 120.0
    assert list(image.header["HISTORY"]) == ["stacked in Siril"]
    sky = image.wcs.pixel_to_world(2, 1)
    assert sky.ra.deg == pytest.approx(83.82) and sky.dec.deg == pytest.approx(-5.39)


@pytest.mark.parametrize("text", ["", "ImageJ=1.53t\nimages=1", '{"shape": [4, 6]}', "a photo"])
def test_other_descriptions_are_no_header(text):
    assert description_header(text) is None


@pytest.mark.parametrize(
    ("make", "ours"),
    [
        (lambda p: tifffile.imwrite(p, _ramp((4, 5), "float32")), True),
        (lambda p: tifffile.imwrite(p, _ramp((4, 5, 3), "uint16"), photometric="rgb"), True),
        (lambda p: tifffile.imwrite(p, _ramp((4, 5, 3), "uint8"), photometric="rgb"), False),
        (lambda p: tifffile.imwrite(p, _ramp((4, 5), "uint8")), False),
        (lambda p: tifffile.imwrite(p, _ramp((4, 5, 4), "uint16"), photometric="rgb"), False),
        (lambda p: tifffile.imwrite(p, _ramp((2, 4, 5), "float32")), False),
        (lambda p: tifffile.imwrite(p, _ramp((4, 5), "float64")), False),
        (lambda p: p.write_bytes(b"not a tiff at all"), False),
    ],
)
def test_only_astro_tiffs_are_claimed(tmp_path, make, ours):
    path = tmp_path / "x.tif"
    make(path)
    assert is_astro_tiff(path) is ours


def test_a_picture_tiff_is_refused_with_the_reason(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", _ramp((4, 5, 3), "uint8"), photometric="rgb")
    with pytest.raises(TiffReadError, match="not an astronomical image: its samples are uint8"):
        read_tiff(tmp_path / "p.tif")


def test_truncated_tiff_gives_a_clear_error_and_is_left_alone(tmp_path):
    good = tmp_path / "g.tif"
    tifffile.imwrite(good, _ramp((64, 64), "float32"))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:2000])
    before = _sha256(cut)
    with pytest.raises(TiffReadError) as info:
        read_tiff(cut)
    assert str(info.value).startswith(f"Cannot open TIFF file '{cut}'")
    assert "\n" not in str(info.value)
    assert _sha256(cut) == before


def test_a_codec_tifffile_lacks_is_named_with_the_package_to_install(tmp_path):
    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed: every codec reads")
    tifffile.imwrite(tmp_path / "z.tif", _ramp((8, 8), "uint16"), compression="zlib")
    content = (tmp_path / "z.tif").read_bytes()
    deflate = (259).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    at = content.index(deflate) + len(deflate)
    assert content[at : at + 2] == (8).to_bytes(2, "little")
    lzw = content[:at] + (5).to_bytes(2, "little") + content[at + 2 :]  # says LZW instead
    (tmp_path / "lzw.tif").write_bytes(lzw)
    with pytest.raises(TiffReadError, match="pip install imagecodecs"):
        read_tiff(tmp_path / "lzw.tif")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(TiffReadError, match="no such file"):
        read_tiff(tmp_path / "nowhere.tif")


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("channels", [1, 3])
def test_float_round_trip_is_bit_exact_with_header_and_provenance(tmp_path, channels):
    data = (_ramp((channels, 5, 6), "float32") / 3).squeeze()
    data[(0,) * data.ndim] = np.nan
    header = fits.Header({"OBJECT": "M 42", "BZERO": 32768, **WCS_CARDS})
    out = write_tiff(
        tmp_path / "r.tif",
        data,
        header=header,
        channel_axis=0 if channels == 3 else None,
        provenance={"DNSTRENG": (0.5, "strength")},
        history=["denoised"],
    )
    [back] = read_tiff(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.header["OBJECT"] == "M 42" and back.header["DNSTRENG"] == 0.5
    assert "BZERO" not in back.header  # the data are floats: the source's scaling is gone
    assert list(back.header["HISTORY"])[-1] == "denoised"
    assert back.wcs is not None
    stored = tifffile.imread(out)  # other readers see the top row first
    expected = data[::-1] if channels == 1 else np.moveaxis(data, 0, -1)[::-1]
    np.testing.assert_array_equal(stored, expected)
    with tifffile.TiffFile(out) as tif:
        assert "napari-astrodenoise" in tif.pages[0].description


def test_sixteen_bit_keeps_whole_adu_exactly(tmp_path):
    data = _ramp((4, 5), "float32") * 1000
    out = write_tiff(tmp_path / "a.tif", data, bits=16)
    assert tifffile.imread(out).dtype == np.uint16
    [back] = read_tiff(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.header["T16SCALE"] == 1.0 and back.header["T16ZERO"] == 0.0


def test_sixteen_bit_scales_other_data_and_records_how(tmp_path):
    data = _ramp((4, 5), "float32") / 19.0 - 0.3
    data[2, 2] = np.nan
    out = write_tiff(tmp_path / "s.tif", data, bits=16)
    [back] = read_tiff(out)
    zero, scale = back.header["T16ZERO"], back.header["T16SCALE"]
    restored = zero + scale * back.data
    finite = np.isfinite(data)
    np.testing.assert_allclose(restored[finite], data[finite], atol=scale / 2 + 1e-7)
    assert back.data[2, 2] == 0
    assert any("1 NaN/inf pixels" in line for line in back.header["HISTORY"])


def test_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="bits must be 32"):
        write_tiff(tmp_path / "b.tif", np.zeros((4, 4), np.float32), bits=8)
    with pytest.raises(ValueError, match="mono or RGB"):
        write_tiff(tmp_path / "s.tif", np.zeros((5, 4, 4), np.float32), channel_axis=0)
    target = tmp_path / "mine.tif"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        write_tiff(target, np.zeros((4, 4), np.float32))
    assert target.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.tif"]


@pytest.mark.parametrize("name", ["ic410_lrgb_f32_pixinsight.xisf", "m57_mono_u16_zlibsh.xisf"])
def test_real_xisf_through_tiff_keeps_pixels_and_keywords(shared_formats_dir, tmp_path, name):
    [image] = read_xisf(shared_formats_dir / name)
    out = write_tiff(
        tmp_path / "x.tif",
        image.data,
        header=image.header,
        channel_axis=0 if image.data.ndim == 3 else None,
    )
    [back] = read_tiff(out)
    np.testing.assert_array_equal(back.data, image.data)
    for key in ("OBJECT", "INSTRUME", "EGAIN"):
        assert back.header.get(key) == image.header.get(key)
