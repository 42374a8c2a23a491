"""astrodenoise finetune: the spellings scripts call, one-line reasons, the model then used."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import cli
from napari_astrodenoise.simulate.noise import poisson_gaussian


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user-models"
    monkeypatch.setenv("ASTRODENOISE_MODELS_DIR", str(folder))
    return folder


def _star_frames(folder, n=2, shape=(160, 160), shift=(3, -2)):
    """Sub-exposures of one star field, each drifted by ``shift`` from the last."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[: shape[0] + 40, : shape[1] + 40]
    sky = np.full(yy.shape, 200.0)
    for y, x, f in zip(*rng.uniform([0, 0, 3e3], [*yy.shape, 3e4], (60, 3)).T, strict=True):
        sky += f / (2 * np.pi * 1.5**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    paths = []
    for k in range(n):
        dy, dx = 20 + k * shift[0], 20 + k * shift[1]
        clean = sky[dy : dy + shape[0], dx : dx + shape[1]]
        data = poisson_gaussian(clean, gain=1.0, read_noise=6.0, seed=k).astype(np.float32)
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
def test_finetune_then_denoise_with_the_new_model(tmp_path, capsys, models_dir):
    frames = _star_frames(tmp_path)
    argv = ["finetune", *frames, "--name", "my-camera", "--minutes", "0.05", "--overwrite"]
    code, out, err = _run(capsys, *argv, "--quiet")
    assert code == 0, err
    assert "my-camera ->" in out and str(models_dir) in out
    assert (models_dir / "my-camera.json").is_file()
    code, out, _ = _run(capsys, "models")
    assert "my-camera [user, fine-tuned from astrodenoise-quick]" in out
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
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, models_dir, argv, reason):
    frames = _star_frames(tmp_path)
    if reason == "no such file":
        frames = [frames[0], tmp_path / "missing.fits"]
    code, _out, err = _run(capsys, "finetune", *frames, *argv, "--quiet")
    assert code == 2
    assert reason in err and len(err.strip().splitlines()) == 1
    assert not models_dir.exists() or not any(models_dir.iterdir())
