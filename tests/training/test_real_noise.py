"""The real-noise default candidate: the mixed sampler, its sources, and one short run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import gaussian_filter
from training.real_noise import MixedSampler, build_mix, sim_sampler, train_candidate

from napari_astrodenoise.finetune.data import Source, TileSampler
from training import real_noise


def _sampler(level: float, seed: int) -> TileSampler:
    rng = np.random.default_rng(seed)
    planes = (level + rng.normal(0, 5, size=(1, 128, 128))).astype(np.float32)
    return TileSampler([Source.of(planes, f"flat{level}", softening=3.0)], [(0, 0)], 32, 96)


def test_validation_visits_every_source_in_turn_and_training_follows_the_weights():
    mix = MixedSampler([_sampler(100, 0), _sampler(200, 1)], np.array([0.9, 0.1]), ["a", "b"])
    rng = np.random.default_rng(0)
    val = [float(np.median(mix.sample(rng, 2, validation=True).target)) for _ in range(4)]
    assert [round(v, -2) for v in val] == [100, 200, 100, 200]
    drawn = [float(np.median(mix.sample(rng, 1).target)) for _ in range(300)]
    share_a = np.mean(np.round(drawn, -2) == 100)
    assert 0.83 < share_a < 0.96


def test_simulated_sources_are_two_independent_noise_draws_of_one_scene(monkeypatch):
    monkeypatch.setattr(real_noise, "SIM_SCENES", 2)
    monkeypatch.setattr(real_noise, "SIM_SIDE", 128)
    sampler = sim_sampler(softening=3.0, tile_size=32)
    assert len(sampler.sources) == 4
    assert sorted(sampler.pairs) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    for a, b in ((0, 1), (2, 3)):
        pa, pb = sampler.sources[a].planes, sampler.sources[b].planes
        assert pa.shape == pb.shape
        diff = (pa - pb).astype(np.float64)
        sigma = np.std(diff)
        assert sigma > 0  # not the same draw
        assert abs(np.mean(diff)) < 5 * sigma / np.sqrt(diff.size)  # same scene underneath
    assert {s.planes.shape[0] for s in sampler.sources} == {1, 3}  # mono and colour


def _data_dir(tmp_path):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:256, :256]
    sky = 500 + 300 * np.exp(-((yy - 128) ** 2 + (xx - 100) ** 2) / 200.0)
    train = tmp_path / "fits" / "train"
    train.mkdir(parents=True)
    white = sky + rng.normal(0, 10, size=sky.shape)
    fits.writeto(train / "white.fits", white.astype(np.float32))
    smooth = sky + 30 * gaussian_filter(rng.normal(0, 1, size=sky.shape), 1.5)
    fits.writeto(train / "resampled.fits", smooth.astype(np.float32))
    return tmp_path


def test_the_mix_takes_white_single_frames_and_says_why_it_skips_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(real_noise, "SIM_SCENES", 2)
    monkeypatch.setattr(real_noise, "SIM_SIDE", 128)
    mix, record = build_mix(softening=3.0, tile_size=32, data=_data_dir(tmp_path))
    assert mix.names == ["singles: white.fits", "sim: simulated pairs"]
    assert mix.weights == pytest.approx([1 / 3, 2 / 3])  # 0.2 : 0.4, no sequences here
    assert [s["source"] for s in record["skipped"]] == ["resampled.fits"]
    assert "correlated" in record["skipped"][0]["why"]
    only_sim, record = build_mix(softening=3.0, tile_size=32, use=("sim",), data=tmp_path)
    assert only_sim.names == ["sim: simulated pairs"] and record["group_weights"] == {"sim": 0.4}


def test_a_short_run_writes_a_model_that_loads_and_records_its_sources(tmp_path, monkeypatch):
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    try:
        load_model("default")
    except ModelNotFoundError:
        pytest.skip("no shipped model to start from")
    monkeypatch.setattr(real_noise, "SIM_SCENES", 2)
    monkeypatch.setattr(real_noise, "SIM_SIDE", 128)
    path = train_candidate(
        minutes=0.2,
        out=tmp_path / "out",
        name="rn-test",
        data=_data_dir(tmp_path),
        log=lambda _line: None,
    )
    record = json.loads(path.read_text())["real_noise"]
    assert record["steps"] > 0
    assert record["base"]["name"] == load_model("default").name
    assert [s["source"] for s in record["sources"]] == [
        "singles: white.fits",
        "sim: simulated pairs",
    ]
    assert record["validation"]["loss_after"] <= record["validation"]["loss_before"]
    assert load_model(path).name == "rn-test"
    with pytest.raises(FileExistsError, match="overwrite"):
        train_candidate(minutes=0.2, out=tmp_path / "out", name="rn-test", data=tmp_path)
