"""The astrodenoise command with XISF and TIFF: the input's format out, --format to choose."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from napari_astrodenoise import cli
from napari_astrodenoise.fits_io import read_fits, write_fits
from napari_astrodenoise.image_io import read_image
from napari_astrodenoise.tiff_io import write_tiff
from napari_astrodenoise.xisf_io import read_xisf
from napari_astrodenoise.xisf_write import write_xisf


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _sky(shape=(48, 56), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (500 + rng.normal(0, 8, size=shape)).astype(np.float32)


def _header() -> fits.Header:
    return fits.Header([("OBSERVER", "E. Hubble", "kept through denoising"), ("EXPTIME", 60.0)])


def _argv(model, *args):
    return ["denoise", *args, "--model", model.path, "--tile-size", "32", "--quiet"]


def test_denoise_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit):
        cli.main(["denoise", "--help"])
    text = capsys.readouterr().out
    assert "--format FMT" in text and "fits, xisf or tiff" in text
    for word in ("FITS", "XISF", "TIFF", "--tiff-bits", "--compress"):
        assert word in text


def test_xisf_in_gives_xisf_out_with_keywords_and_provenance(tmp_path, capsys, random_model):
    write_xisf(tmp_path / "in.xisf", _sky(), header=_header())
    code, out, _ = _run(
        capsys, *_argv(random_model, tmp_path / "in.xisf", "--output-dir", tmp_path / "o")
    )
    assert code == 0, out
    [image] = read_xisf(tmp_path / "o" / "in_denoised.xisf")
    assert image.header["OBSERVER"] == "E. Hubble" and "ADSTRNTH" in image.header
    history = image.format_info["properties"]["Processing:History"].value
    assert "input:" in history and random_model.sha256[:16] in history


@pytest.mark.parametrize(
    ("extra", "name", "expected"),
    [
        (["--format", "tiff"], "out.tif", "tiff"),
        (["--format", "xisf", "--compress"], "out.xisf", "xisf"),
        ([], "out.xisf", "xisf"),
        ([], "out.tiff", "tiff"),
        ([], "out.dat", "fits"),
    ],
)
def test_format_is_chosen_by_flag_then_name_then_input(
    tmp_path, capsys, random_model, extra, name, expected
):
    write_fits(tmp_path / "in.fits", _sky(), header=_header())
    code, _, err = _run(
        capsys, *_argv(random_model, tmp_path / "in.fits", "-o", tmp_path / name, *extra)
    )
    assert code == 0, err
    [image] = read_image(tmp_path / name)
    assert image.file_format == expected and image.header["OBSERVER"] == "E. Hubble"


def test_sixteen_bit_tiff_on_request(tmp_path, capsys, random_model):
    write_fits(tmp_path / "in.fits", _sky())
    argv = _argv(random_model, tmp_path / "in.fits", "-o", tmp_path / "o.tif", "--tiff-bits", "16")
    assert _run(capsys, *argv)[0] == 0
    assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    assert "T16SCALE" in read_image(tmp_path / "o.tif")[0].header


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "OUT/o.fits", "--format", "xisf"], "names a fits file but --format says xisf"),
        (["-o", "OUT/o.xisf"], "stack of 5 planes"),
    ],
)
def test_impossible_outputs_are_refused_before_any_work(
    tmp_path, capsys, random_model, args, message
):
    write_fits(tmp_path / "in.fits", np.stack([_sky()] * 5), channel_axis=0)
    argv = [str(a).replace("OUT", str(tmp_path)) for a in args]
    code, _, err = _run(capsys, *_argv(random_model, tmp_path / "in.fits", *argv))
    assert code == cli.EXIT_BAD_INPUT and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fits"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.xisf", b"XISF0100" + (500).to_bytes(4, "little") + bytes(4) + b"<xisf", "truncated"),
        ("bad.tif", b"II*\x00" + bytes(4), "Cannot open TIFF file"),
        ("photo.tif", None, "not an astronomical image"),
    ],
)
def test_bad_xisf_and_tiff_inputs_give_one_line_and_no_output(
    tmp_path, capsys, random_model, name, content, message
):
    path = tmp_path / name
    if content is None:
        tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    else:
        path.write_bytes(content)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, _, err = _run(capsys, *_argv(random_model, path, "--output-dir", tmp_path / "o"))
    assert code == cli.EXIT_BAD_INPUT and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written, not even the folder
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# --------------------------------------------------------------------------- same pixels


def _crop_m13(m13_dir):
    return read_fits(m13_dir / "m13.fits")[0].data[100:164, 100:164]


def _crop_m57(shared_formats_dir):
    return read_xisf(shared_formats_dir / "m57_mono_u16_zlibsh.xisf")[0].data[96:160, 96:160]


def _crop_ic410(shared_formats_dir):
    [image] = read_xisf(shared_formats_dir / "ic410_lrgb_f32_pixinsight.xisf")
    return image.data[:, 150:198, 250:298]


@pytest.mark.parametrize("source", ["m13", "m57", "ic410_rgb"])
def test_shipped_model_gives_the_same_pixels_from_fits_xisf_and_tiff(
    tmp_path, capsys, request, source
):
    if source == "m13":
        crop = _crop_m13(request.getfixturevalue("m13_dir"))
    elif source == "m57":
        crop = _crop_m57(request.getfixturevalue("shared_formats_dir"))
    else:
        crop = _crop_ic410(request.getfixturevalue("shared_formats_dir"))
    axis = 0 if crop.ndim == 3 else None
    inputs = {
        "fits": write_fits(tmp_path / "crop.fits", crop, channel_axis=axis),
        "xisf": write_xisf(tmp_path / "crop.xisf", crop, channel_axis=axis),
        "tiff": write_tiff(tmp_path / "crop.tif", crop, channel_axis=axis),
    }
    if crop.ndim == 2 and np.array_equal(crop, np.round(crop)) and crop.max() <= 65535:
        inputs["tiff16"] = tmp_path / "crop16.tif"  # as a stacker writes it: 16-bit, top row first
        tifffile.imwrite(inputs["tiff16"], crop[::-1].astype(np.uint16))
    outputs = {}
    for name, path in inputs.items():
        out = tmp_path / f"out_{name}{path.suffix}"
        code, _, err = _run(capsys, "denoise", path, "-o", out, "--model", "default", "--quiet")
        assert code == 0, err
        [outputs[name]] = read_image(out)
        assert outputs[name].file_format == name.removesuffix("16")
    reference = outputs.pop("fits").data
    assert not np.array_equal(reference, crop)  # the model did change the pixels
    for name, image in outputs.items():
        np.testing.assert_array_equal(image.data, reference, err_msg=name)
