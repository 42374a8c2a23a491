"""The astrodenoise command on frames beyond --memory: row blocks streamed to FITS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import cli
from napari_astrodenoise.core.noiselevel import noise_sigma
from napari_astrodenoise.fits_write import write_fits_blocks


def _sky(shape, seed=0):
    rng = np.random.default_rng(seed)
    data = (500 + rng.normal(0, 8, size=shape)).astype(np.float32)
    data[..., 10:14, 20:24] += 4000  # a star
    data[..., 3, 5] = np.nan
    return data


def _run(capsys, model, *args):
    argv = ["denoise", *args, "--model", model.path, "--tile-size", "32", "--quiet"]
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("shape", [(301, 97), (3, 150, 77)])
def test_a_frame_beyond_memory_streams_to_fits_like_the_in_memory_run(
    tmp_path, capsys, random_model, shape
):
    data = _sky(shape)
    source = fits.PrimaryHDU(data)
    source.header["OBSERVER"] = "E. Hubble"
    source.writeto(tmp_path / "in.fits")
    code, out, err = _run(capsys, random_model, tmp_path / "in.fits", "-o", tmp_path / "mem.fits")
    assert code == 0, err
    code, out, err = _run(
        capsys,
        random_model,
        tmp_path / "in.fits",
        "-o",
        tmp_path / "big.fits",
        "--memory",
        "1MB",
    )
    assert code == 0, err
    assert "row blocks" in out
    with fits.open(tmp_path / "mem.fits") as a, fits.open(tmp_path / "big.fits") as b:
        expected, got = a[0].data, b[0].data
        assert b[0].header["OBSERVER"] == "E. Hubble"
        assert b[0].header["ADMSHA"] == a[0].header["ADMSHA"]
        assert b[0].header["ADFLUXLK"] == a[0].header["ADFLUXLK"]
    assert got.shape == data.shape
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    planes = data if data.ndim == 3 else data[np.newaxis]
    assert np.nanmax(np.abs(got - expected)) <= 0.01 * float(noise_sigma(planes).min())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.fits", "in.fits", "mem.fits"]


def test_a_frame_beyond_memory_is_refused_for_other_formats_before_work(
    tmp_path, capsys, random_model
):
    fits.PrimaryHDU(_sky((40, 40))).writeto(tmp_path / "in.fits")
    code, _, err = _run(
        capsys, random_model, tmp_path / "in.fits", "-o", tmp_path / "o.xisf", "--memory", "1MB"
    )
    assert code == 2 and "plain FITS only" in err
    assert not (tmp_path / "o.xisf").exists()


def test_memory_sizes_are_parsed_and_nonsense_refused(capsys):
    assert cli._parse_bytes("2GB") == 2_000_000_000
    assert cli._parse_bytes("512MiB") == 512 << 20
    with pytest.raises(SystemExit):
        cli.main(["denoise", "x.fits", "-o", "y.fits", "--memory", "lots"])
    assert "not a memory size" in capsys.readouterr().err


def test_block_writer_leaves_nothing_when_a_block_fails(tmp_path):
    def blocks():
        yield slice(0, 4), np.zeros((4, 8), np.float32)
        msg = "network failed"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="network failed"):
        write_fits_blocks(tmp_path / "o.fits", blocks(), (8, 8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="never written"):
        write_fits_blocks(tmp_path / "o.fits", [(slice(0, 4), np.zeros((4, 8)))], (8, 8))
    assert list(tmp_path.iterdir()) == []


def test_block_writer_equals_the_whole_frame_writer(tmp_path):
    from napari_astrodenoise.fits_write import write_fits

    data = np.random.default_rng(1).normal(size=(5, 3, 7)).astype(np.float32)  # (H, C, W)
    header = fits.Header({"OBJECT": "M31"})
    write_fits(tmp_path / "a.fits", data, header=header, channel_axis=1)
    parts = [(slice(3, 5), data[3:]), (slice(0, 3), data[:3])]
    write_fits_blocks(tmp_path / "b.fits", parts, data.shape, header=header, channel_axis=1)
    with fits.open(tmp_path / "a.fits") as a, fits.open(tmp_path / "b.fits") as b:
        np.testing.assert_array_equal(b[0].data, a[0].data)
        assert b[0].header["OBJECT"] == "M31"
        assert b[0].header["NAXIS3"] == 3
