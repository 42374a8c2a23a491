"""The astrodenoise command: FITS in, FITS out, header kept, nothing overwritten unasked."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import cli


def _sky_file(path, shape=(64, 80), *, seed=0, **cards):
    rng = np.random.default_rng(seed)
    data = (500 + rng.normal(0, 8, size=shape)).astype(np.float32)
    hdu = fits.PrimaryHDU(data)
    hdu.header["OBSERVER"] = ("E. Hubble", "kept through denoising")
    hdu.header.update(cards)
    hdu.writeto(path)
    return data


def _denoise_argv(model, *args):
    """``astrodenoise denoise`` with ``args`` (inputs, output, flags), 32 px tiles, quiet."""
    return ["denoise", *args, "--model", model.path, "--tile-size", "32", "--quiet"]


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_denoise_writes_fits_with_header_and_provenance(tmp_path, capsys, random_model):
    data = _sky_file(tmp_path / "in.fits")
    code, out, _ = _run(
        capsys,
        *_denoise_argv(random_model, tmp_path / "in.fits", "-o", tmp_path / "out.fits"),
        "--strength",
        "0.7",
        "--flux-lock",
        "0",
        "--lock-threshold",
        "2.5",
        "--change-limit",
        "4",
        "--peak-cap",
        "2",
        "--star-refit",
        "0.1",
        "--ensemble",
        "2",
    )
    assert code == 0, out
    with fits.open(tmp_path / "out.fits") as hdul:
        header, result = hdul[0].header, hdul[0].data
    assert result.shape == data.shape and result.dtype == np.dtype(">f4")
    assert not np.array_equal(result, data)  # the random model changed it
    assert header["OBSERVER"] == "E. Hubble"
    assert header["ADMSHA"] == random_model.sha256
    assert header["ADSTRNTH"] == 0.7
    assert header["ADFLUXLK"] == 0.0 and header["ADENSMBL"] == 2 and header["ADCHGLIM"] == 4.0
    assert header["ADPKCAP"] == 2 and header["ADLOCKTH"] == 2.5 and header["ADREFIT"] == 0.1
    history = "".join(str(h) for h in header["HISTORY"])  # long lines wrap over cards
    assert "in.fits" in history and random_model.sha256[:16] in history


def test_colour_cube_comes_back_as_a_colour_cube(tmp_path, capsys, random_model):
    _sky_file(tmp_path / "rgb.fits", shape=(3, 40, 48))
    code, *_ = _run(
        capsys, *_denoise_argv(random_model, tmp_path / "rgb.fits", "-o", tmp_path / "o.fits")
    )
    assert code == 0
    assert fits.getdata(tmp_path / "o.fits").shape == (3, 40, 48)


def test_an_existing_output_is_never_overwritten_without_the_flag(tmp_path, capsys, random_model):
    _sky_file(tmp_path / "in.fits")
    (tmp_path / "out.fits").write_bytes(b"precious")
    args = _denoise_argv(random_model, tmp_path / "in.fits", "-o", tmp_path / "out.fits")
    code, _, err = _run(capsys, *args)
    assert code == cli.EXIT_BAD_INPUT
    assert "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out.fits").read_bytes() == b"precious"
    code, *_ = _run(capsys, *args, "--overwrite")
    assert code == 0
    assert fits.getdata(tmp_path / "out.fits").shape == (64, 80)


def test_many_files_load_the_model_once(tmp_path, capsys, random_model, monkeypatch):
    from napari_astrodenoise.core import weights

    calls = []
    real = weights.load_model
    monkeypatch.setattr(weights, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    for i in range(3):
        _sky_file(tmp_path / f"f{i}.fits", seed=i)
    files = [tmp_path / f"f{i}.fits" for i in range(3)]
    code, _out, _ = _run(
        capsys, *_denoise_argv(random_model, *files, "--output-dir", tmp_path / "out")
    )
    assert code == 0
    assert len(calls) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "f0_denoised.fits",
        "f1_denoised.fits",
        "f2_denoised.fits",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"SIMPLE  = garbage" * 10), "garbage.fits"),
    ],
    ids=["missing", "garbage"],
)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, random_model, make, message):
    path = tmp_path / "garbage.fits"
    make(path)
    code, _, err = _run(
        capsys, "denoise", path, "-o", tmp_path / "o.fits", "--model", random_model.path
    )
    assert code == cli.EXIT_BAD_INPUT
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.fits").exists()


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    _sky_file(tmp_path / "in.fits")
    code, _, err = _run(
        capsys, "denoise", tmp_path / "in.fits", "-o", tmp_path / "o.fits", "--model", "nope"
    )
    assert code == cli.EXIT_BAD_INPUT and "no model named 'nope'" in err


def test_starmask_writes_a_soft_mask(tmp_path, capsys):
    data = _sky_file(tmp_path / "in.fits", shape=(64, 64))
    yy, xx = np.mgrid[:64, :64]
    data += 5000 * np.exp(-((xx - 30) ** 2 + (yy - 20) ** 2) / 4.0)
    fits.writeto(tmp_path / "star.fits", data)
    code, *_ = _run(capsys, "starmask", tmp_path / "star.fits", "-o", tmp_path / "m.fits")
    assert code == 0
    mask = fits.getdata(tmp_path / "m.fits")
    assert mask.shape == (64, 64)
    assert 0 <= mask.min() and mask.max() <= 1
    assert mask[20, 30] > 0.9 and mask[50, 5] < 0.01


def test_seams_reports_gaussian_far_below_naive(tmp_path, capsys, random_model):
    _sky_file(tmp_path / "in.fits", shape=(128, 128))
    common = ["seams", tmp_path / "in.fits", "--model", random_model.path, "--tile-size", "32"]
    code, out_g, _ = _run(capsys, *common, "-o", tmp_path / "diff.fits")
    assert code == 0
    code, out_n, _ = _run(capsys, *common, "--blend", "none")
    seam_g = float(out_g.strip().splitlines()[-1].split()[-1])
    seam_n = float(out_n.strip().splitlines()[-1].split()[-1])
    assert seam_g < 0.5 * seam_n
    assert fits.getdata(tmp_path / "diff.fits").shape == (128, 128)


def test_models_lists_or_says_none_ship(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0
    from napari_astrodenoise.core.weights import list_models

    names = list_models()
    if names:
        assert names[0] in out and "(default)" in out
    else:
        assert "no trained model ships" in out
