"""Batches of files on a dask.distributed cluster: failures reported, the rest written, resume."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise import cli
from napari_astrodenoise.core.tiling import count_tiles

distributed = pytest.importorskip("distributed")


def _sky_file(path, seed):
    rng = np.random.default_rng(seed)
    fits.PrimaryHDU((500 + rng.normal(0, 8, size=(48, 40))).astype(np.float32)).writeto(path)


def _night(folder, n=3, broken=True):
    folder.mkdir()
    paths = []
    for i in range(n):
        paths.append(folder / f"light_{i}.fits")
        _sky_file(paths[-1], i)
    if broken:
        paths.append(folder / "light_broken.fits")
        header = fits.PrimaryHDU(np.zeros((48, 40), np.float32)).header.tostring()
        paths[-1].write_bytes(header.encode() + b"\0" * 100)  # truncated data
    return paths


def _run(capsys, model_path, *args):
    argv = ["denoise", *args, "--model", model_path, "--tile-size", "32", "--quiet"]
    code = cli.main([str(a) for a in argv])
    return code, *capsys.readouterr()


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_a_local_cluster_writes_the_good_files_and_reports_the_broken_one(
    tmp_path, capsys, random_model_path
):
    inputs = _night(tmp_path / "night")
    out = tmp_path / "out"
    code, _, stderr = _run(
        capsys, random_model_path, *inputs, "--output-dir", out, "--workers", "2"
    )
    assert code == cli.EXIT_SOME_FAILED
    assert "1 of 4 files failed" in stderr
    assert "light_broken.fits: " in stderr and "truncated" in stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"light_{i}_denoised.fits" for i in range(3)]
    for i in range(3):
        with fits.open(out / f"light_{i}_denoised.fits") as hdul:
            assert len(hdul[0].header["ADINSHA"]) == 64
            assert np.isfinite(hdul[0].data).all()


def test_resume_skips_what_is_done_and_redoes_what_changed(
    tmp_path, capsys, random_model_path, client
):
    inputs = _night(tmp_path / "night", n=2, broken=False)
    out = tmp_path / "out"
    common = ("--output-dir", out, "--scheduler", client.scheduler.address)
    code, _, stderr = _run(capsys, random_model_path, *inputs, *common)
    assert code == 0, stderr
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, stdout, stderr = _run(capsys, random_model_path, *inputs, *common, "--resume")
    assert code == 0, stderr
    assert stdout.count("skipped") == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first
    # new bytes in one input, or other settings: its output is not done any more
    inputs[1].unlink()
    _sky_file(inputs[1], 99)
    code, _, stderr = _run(capsys, random_model_path, *inputs, *common, "--resume")
    assert code == 2 and "pass --overwrite" in stderr  # never replaced without --overwrite
    code, stdout, stderr = _run(
        capsys, random_model_path, *inputs, *common, "--resume", "--overwrite"
    )
    assert code == 0, stderr
    assert stdout.count("skipped") == 1
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert after["light_0_denoised.fits"] == first["light_0_denoised.fits"]
    assert after["light_1_denoised.fits"] != first["light_1_denoised.fits"]
    code, stdout, _ = _run(
        capsys, random_model_path, *inputs, *common, "--resume", "--overwrite", "--strength", "0.5"
    )
    assert code == 0 and "skipped" not in stdout


def test_the_python_api_loads_the_model_once_per_worker(tmp_path, random_model_path, client):
    from napari_astrodenoise.batch import PLUGIN_NAME, FileJob, denoise_files

    inputs = _night(tmp_path / "night", n=4, broken=False)
    jobs = [
        FileJob(str(p), str(tmp_path / f"{p.stem}_out.fits"), options={"tile_size": 32})
        for p in inputs
    ]
    seen, tiles = [], []
    outcomes = denoise_files(
        client,
        jobs,
        random_model_path,
        threads=1,
        progress=lambda d, t, o: seen.append((d, t)),
        tiles=lambda d, t: tiles.append((d, t)),
    )
    assert [o.status for o in outcomes] == ["done"] * 4
    assert seen[-1] == (4, 4)
    # the workers' tiles, as they went: 48 x 40 frames in 32 px tiles at 0.25 overlap
    per_file = count_tiles((48, 40), tile_size=32)
    deadline = time.monotonic() + 10  # the last events may trail the results
    while (not tiles or tiles[-1] != (4 * per_file, 4 * per_file)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tiles[-1] == (4 * per_file, 4 * per_file)
    assert all(d <= t for d, t in tiles)
    loads = client.run(lambda dask_worker: dask_worker.plugins[PLUGIN_NAME].loads)
    assert sorted(loads.values()) == [1, 1]
    assert {o.worker.split(":")[-1] for o in outcomes} <= {str(p) for p in _pids(client)}
    assert str(os.getpid()) not in {o.worker.split(":")[-1] for o in outcomes}


def _pids(client):
    return client.run(os.getpid).values()


def test_the_settings_digest_counts_the_model_s_own_options():
    from napari_astrodenoise.batch import FileJob

    own = {"flux_lock": 0.0}
    plain = FileJob("a.fits", "b.fits")
    told = FileJob("a.fits", "b.fits", options={"flux_lock": 8.0})
    assert plain.settings(own)["options"]["flux_lock"] == 0.0  # what the engine runs with
    assert told.settings(own)["options"]["flux_lock"] == 8.0
    # a model that runs without the lock: asking for the lock is another output
    assert plain.digest("sha", own) != told.digest("sha", own)
    assert plain.digest("sha") == told.digest("sha")  # a model with no options of its own
