"""astrodenoise finetune: the spellings scripts call, one-line reasons, the model then used."""

from __future__ import annotations

import json

import pytest
from astropy.io import fits

from napari_astrodenoise import cli


def _star_frames(folder, frames):
    """The frames written as FITS sub-exposures of one camera and exposure."""
    paths = []
    for k, data in enumerate(frames):
        hdu = fits.PrimaryHDU(data)
        hdu.header["INSTRUME"] = "test camera"
        hdu.header["EXPTIME"] = 60.0
        paths.append(folder / f"sub{k}.fits")
        hdu.writeto(paths[-1])
    return paths


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_finetune_then_denoise_with_the_new_model(tmp_path, capsys, models_dir, drifting_frames):
    frames = _star_frames(tmp_path, drifting_frames())
    argv = ["finetune", *frames, "--name", "my-camera", "--minutes", "0.05", "--overwrite"]
    code, out, err = _run(capsys, *argv, "--precision", "fp32", "--quiet")
    assert code == 0, err
    assert "my-camera ->" in out and str(models_dir) in out
    record = json.loads((models_dir / "my-camera.json").read_text())
    assert record["finetune"]["precision"] == "fp32"
    lock = record["options"]["flux_lock"]  # measured on frame 1, said in one line
    assert f"flux lock: {'off' if lock == 0 else f'{lock:g} px'} for this model" in out
    code, out, _ = _run(capsys, "models")
    assert "my-camera [user, fine-tuned from astrodenoise-quick]" in out
    assert f"runs with --flux-lock {lock:g} unless told otherwise" in out
    code, out, err = _run(
        capsys,
        "denoise",
        frames[0],
        "--model",
        "my-camera",
        "--output-dir",
        tmp_path / "D",
        "--quiet",
    )
    assert code == 0, err
    with fits.open(tmp_path / "D" / "sub0_denoised.fits") as hdul:
        assert hdul[0].header["ADMODEL"] == "my-camera"
        assert hdul[0].header["ADFLUXLK"] == lock  # the model's own
    # the same name again needs --overwrite: refused before any training
    code, _, err = _run(capsys, "finetune", *frames, "--name", "my-camera", "--minutes", "0.05")
    assert code == 2 and "overwrite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--name", "x"], "no such file"),
        (["--name", "astrodenoise-quick", "--overwrite"], "shipped"),
        (["--name", "x", "--single"], "--single takes one frame"),
    ],
    ids=["missing-file", "shipped-name", "single-with-two"],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, capsys, models_dir, drifting_frames, argv, reason
):
    frames = _star_frames(tmp_path, drifting_frames())
    if reason == "no such file":
        frames = [frames[0], tmp_path / "missing.fits"]
    code, _out, err = _run(capsys, "finetune", *frames, *argv, "--quiet")
    assert code == 2
    assert reason in err and len(err.strip().splitlines()) == 1
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_a_bad_precision_is_refused_as_it_is_parsed(tmp_path, capsys, models_dir, drifting_frames):
    frames = _star_frames(tmp_path, drifting_frames())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["finetune", *map(str, frames), "--name", "x", "--precision", "fp16"])
    assert exit_.value.code == 2
    assert "precision must be one of 'auto', 'fp32', 'bf16'" in capsys.readouterr().err
    assert not models_dir.exists()
