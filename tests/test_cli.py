"""The astrodenoise command: FITS in, FITS out, header kept, nothing overwritten unasked."""

from __future__ import annotations

import re

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import cli
from napari_astrodenoise.core.diagnostics import seam_verdict


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
    seam_g, seam_n = (_seam_sigma(out) for out in (out_g, out_n))
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


def _seam_sigma(out: str) -> float:
    """The seam strength of ``seams``'s verdict line, ``in.fits: invisible: 0.02 sigma, ...``."""
    match = re.fullmatch(r"in\.fits: [a-z ]+: ([0-9.e+-]+) sigma, .+", out.strip())
    assert match, out
    return float(match.group(1))


def test_seams_says_in_words_whether_seams_would_show(tmp_path, capsys, random_model):
    _sky_file(tmp_path / "in.fits", shape=(128, 128))
    common = ["seams", tmp_path / "in.fits", "--model", random_model.path, "--tile-size", "32"]
    _, out, _ = _run(capsys, *common)
    assert out.strip() == f"in.fits: {seam_verdict(_seam_sigma(out))}"
    assert out.split(": ")[1] in ("invisible", "hard to see", "may show under a hard stretch")


def test_denoise_writes_beside_each_input_by_default(tmp_path, capsys, random_model):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _sky_file(tmp_path / folder / "m31.fits")
    inputs = [tmp_path / "a" / "m31.fits", tmp_path / "b" / "m31.fits"]
    code, out, err = _run(capsys, *_denoise_argv(random_model, *inputs))
    assert code == 0, err
    for path in inputs:
        written = path.with_name("m31_denoised.fits")
        assert f"{path} -> {written}" in out
        assert fits.getdata(written).shape == (64, 80)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "a",
        "b",
        "m31.fits",
        "m31.fits",
        "m31_denoised.fits",
        "m31_denoised.fits",
    ]


def test_the_default_output_is_never_overwritten_without_the_flag(tmp_path, capsys, random_model):
    _sky_file(tmp_path / "m31.fits")
    (tmp_path / "m31_denoised.fits").write_bytes(b"precious")
    code, _, err = _run(capsys, *_denoise_argv(random_model, tmp_path / "m31.fits"))
    assert code == cli.EXIT_BAD_INPUT and "exists; pass --overwrite" in err
    assert (tmp_path / "m31_denoised.fits").read_bytes() == b"precious"


def test_starmask_writes_beside_its_input_by_default(tmp_path, capsys):
    _sky_file(tmp_path / "m31.fits")
    code, *_ = _run(capsys, "starmask", tmp_path / "m31.fits")
    assert code == 0
    assert fits.getdata(tmp_path / "m31_starmask.fits").shape == (64, 80)


@pytest.mark.parametrize("command", ["", "denoise", "starmask", "seams", "finetune", "models"])
def test_help_is_short_with_a_summary_and_an_example(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        cli.main([command, "--help"] if command else ["--help"])
    lines = capsys.readouterr().out.rstrip().splitlines()
    # about 40: denoise also carries the options of many and large frames (--memory,
    # --workers, --scheduler, --resume)
    assert len(lines) <= (44 if command == "denoise" else 40), len(lines)
    assert lines[0].startswith("usage: astrodenoise") and len(lines[0]) <= 80
    assert lines[1] == "" and lines[2].endswith(".") and lines[3] == ""  # a one-line summary
    assert lines[-2] == "example:" or lines[-3] == "example:"
    assert any(line.startswith("  astrodenoise ") for line in lines[-2:])


def test_denoise_help_groups_the_advanced_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["denoise", "--help"])
    text = capsys.readouterr().out
    simple, advanced = text.split("advanced (the defaults are safe):")
    for flag in ("--strength", "--star-protection", "--output-dir", "--overwrite", "--model"):
        assert flag in simple
    for flag in ("--tile-size", "--flux-lock", "--lock-threshold", "--peak-cap", "--star-refit"):
        assert flag in advanced and flag not in simple


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--strength", "1.5"], "strength must be between 0 and 1"),
        (["--tile-size", "100"], "tile_size must be a multiple of 16"),
        (["--batch-size", "0"], "must be a whole number >= 1"),
        (["--hdu", "-1"], "must be a whole number >= 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, words):
    from napari_astrodenoise.core import weights

    monkeypatch.setattr(weights, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    _sky_file(tmp_path / "m31.fits")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["denoise", str(tmp_path / "m31.fits"), *argv])
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m31.fits"]


def test_a_model_s_own_flux_lock_applies_unless_the_flag_is_given(
    tmp_path, capsys, own_lock_model
):
    _sky_file(tmp_path / "in.fits")
    base = ["denoise", tmp_path / "in.fits", "--model", "own-lock", "--quiet"]
    code, out, _ = _run(capsys, *base, "--output-dir", tmp_path / "own")
    assert code == 0, out
    assert fits.getheader(tmp_path / "own" / "in_denoised.fits")["ADFLUXLK"] == 0.0
    code, out, _ = _run(capsys, *base, "--output-dir", tmp_path / "set", "--flux-lock", "8")
    assert code == 0, out
    assert fits.getheader(tmp_path / "set" / "in_denoised.fits")["ADFLUXLK"] == 8.0
