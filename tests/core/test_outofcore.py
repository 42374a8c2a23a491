"""Out-of-core denoising: row blocks of a dask array give the in-memory result."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core import tiling
from napari_astrodenoise.core.fluxlock import lock_block
from napari_astrodenoise.core.noiselevel import (
    SampledPlanes,
    fit_noise_profile,
    fit_noise_profile_of_change,
    noise_sigma,
    prefit_noise_profile,
)
from napari_astrodenoise.core.outofcore import OutOfCoreRun
from napari_astrodenoise.core.pipeline import denoise, iter_denoise
from napari_astrodenoise.core.safeguards import GuardStats, guard_change, guard_reach
from napari_astrodenoise.core.starrefit import brightest_of
from napari_astrodenoise.core.stretch import fit_stretch

da = pytest.importorskip("dask.array")


def _sky(shape, *, seed=0, level=100.0, sigma=5.0, stars=25):
    """Noisy sky with stars on the last two axes (any leading axes)."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    signal = np.zeros((h, w))
    for _ in range(stars):
        y, x, f = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(50, 3000)
        signal += f * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
    noise = rng.normal(0.0, 1.0, size=shape)
    return (level + signal + sigma * np.sqrt(1.0 + signal / 50.0) * noise).astype(np.float32)


def _blocks(planes, rows):
    for y in range(0, planes.shape[1], rows):
        yield planes[:, y : y + rows], y


@pytest.mark.parametrize("rows", [1, 17, 64, 1000])
def test_sampled_planes_give_the_whole_frame_statistics_bit_for_bit(rows):
    chw = _sky((2, 123, 95), seed=1)
    chw[0, 4, 5] = np.nan
    change = np.random.default_rng(2).normal(size=chw.shape).astype(np.float32)
    samples = SampledPlanes(chw.shape)
    changes = SampledPlanes(chw.shape, curvature=False)
    for block, y in _blocks(chw, rows):
        samples.add(block, y)
    for block, y in _blocks(change, rows):
        changes.add(block, y)
    assert fit_stretch(samples).to_dict() == fit_stretch(chw).to_dict()
    np.testing.assert_array_equal(noise_sigma(samples), noise_sigma(chw))
    assert prefit_noise_profile(samples).to_dict() == prefit_noise_profile(chw).to_dict()
    assert (
        fit_noise_profile_of_change(samples, changes).to_dict()
        == fit_noise_profile_of_change(chw, change).to_dict()
    )
    fitted = fit_noise_profile(samples, changes).to_dict()
    assert fitted == fit_noise_profile(chw, change).to_dict()
    with pytest.raises(KeyError, match="not sampled"):
        samples[0][::3, ::5]


def _context_predictor(batch):
    # a context-dependent "network": a blur of each tile, so tile edges matter
    from scipy.ndimage import uniform_filter

    out = uniform_filter(batch, size=(1, 1, 5, 5), mode="reflect") - batch
    return np.concatenate([out, batch[:, :1] * 0], axis=1)


@pytest.mark.parametrize("height", [173, 180])  # 180: the edge tiles grow along y as well
@pytest.mark.parametrize("rows", [slice(0, 1), slice(37, 80), slice(150, None), slice(0, None)])
def test_rows_of_a_frame_stitch_to_the_whole_frames_rows_bit_for_bit(rows, height):
    image = _sky((2, height, 91), seed=3)
    rows = slice(*rows.indices(height))
    options = {"tile_size": 48, "overlap": 0.4}
    whole = tiling.tiled_apply(image, _context_predictor, **options, batch_size=3)
    layout = tiling.plan_tiles(image.shape[1:], **options)
    assert layout.grow == ((9, 9) if height == 180 else (0, 9))
    need = tiling.tile_rows_read(layout, rows)
    got = tiling.drain(
        tiling.iter_tiled_rows(
            image[:, need],
            _context_predictor,
            frame_height=height,
            row0=need.start,
            rows=rows,
            **options,
            batch_size=3,
        )
    )
    np.testing.assert_array_equal(got, whole[:, rows])


def test_a_block_read_with_the_safeguards_reach_is_the_whole_frame_bit_for_bit():
    original = _sky((1, 520, 64), seed=4, stars=60)
    change = (np.random.default_rng(5).normal(0, 6, size=original.shape)).astype(np.float32)
    whole, profile = guard_change(change.copy(), original)
    limited, _ = guard_change(change.copy(), original, until="limited")
    stats = GuardStats(free=profile, brightest=brightest_of(limited))
    reach = guard_reach()
    align = lock_block(8.0, 1.0)
    rows = slice(240, 260)
    lo = (rows.start - reach) // align * align
    hi = rows.stop + reach
    part, _ = guard_change(change[:, lo:hi].copy(), original[:, lo:hi], stats=stats)
    own = slice(rows.start - lo, rows.stop - lo)
    np.testing.assert_array_equal(part[:, own], whole[:, rows])
    # a halo short of the reach is not enough: the reach is what the stages need
    short = slice(rows.start - 8, rows.stop + 8)
    part, _ = guard_change(change[:, short].copy(), original[:, short], stats=stats)
    assert not np.array_equal(part[:, 8:-8], whole[:, rows])


CASES = {
    "mono odd shape": ((203, 157), None, 50, {}),
    "mono one block": ((99, 61), None, 500, {}),
    "colour first axis": ((3, 97, 131), 0, 31, {}),
    "colour last axis, strict lock": ((90, 71, 3), -1, 40, {"lock_threshold": 0.0}),
    "no change limit": ((120, 64), None, 45, {"change_limit": 0.0, "overlap": 0.5}),
    "no safeguards, half strength": (
        (77, 130),
        None,
        20,
        {"flux_lock": 0.0, "change_limit": 0.0, "star_refit": 0.0, "peak_cap": 0, "strength": 0.5},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dask_denoise_equals_in_memory_within_a_hundredth_of_the_noise(case, random_model):
    shape, channel_axis, rows, options = CASES[case]
    image = _sky(shape if channel_axis != -1 else shape[-1:] + shape[:-1], seed=6)
    if channel_axis == -1:
        image = np.ascontiguousarray(np.moveaxis(image, 0, -1))
    image.flat[7] = np.nan
    kwargs = {"model": random_model, "channel_axis": channel_axis, "tile_size": 32, **options}
    expected = denoise(image, **kwargs)
    lazy = denoise(da.from_array(image, chunks=23), block_rows=rows, **kwargs)
    assert isinstance(lazy, da.Array) and lazy.shape == image.shape
    got = lazy.compute()
    planes = image if channel_axis is None else np.moveaxis(image, channel_axis, 0)
    sigma = float(np.min(noise_sigma(planes)))
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) <= 0.01 * sigma


def test_dask_denoise_keeps_scale_equivariance_and_a_noise_channel(noise_model):
    image = _sky((150, 70), seed=7) * np.float32(2.0**-90)
    kwargs = {"model": noise_model, "tile_size": 32}
    expected = denoise(image, **kwargs)
    got = denoise(da.from_array(image), block_rows=33, **kwargs).compute()
    sigma = float(noise_sigma(image)[0])
    assert np.max(np.abs(got - expected)) <= 0.01 * sigma


def test_nothing_runs_until_a_block_is_computed(random_model):
    run = OutOfCoreRun(da.zeros((64, 64), dtype=np.float32), model=random_model, block_rows=16)
    lazy = run.to_dask()
    assert run.settings == {} and run._spill is None
    assert lazy.chunks == ((16, 16, 16, 16), (64,))


def test_unsupported_lazy_runs_are_refused_before_any_work(random_model):
    image = da.zeros((64, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="Bayer mosaic is denoised in memory"):
        denoise(image, model=random_model, bayer=True)
    with pytest.raises(ValueError, match="needs its star_mask"):
        denoise(image, model=random_model, star_protection=0.5)
    with pytest.raises(ValueError, match="denoise\\(\\) takes a dask array"):
        next(iter_denoise(image, model=random_model))
    with pytest.raises(ValueError, match="batch_size"):
        denoise(image, model=random_model, batch_size=0)


@pytest.fixture(scope="module")
def noise_model(tmp_path_factory):
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    torch.manual_seed(1)
    module = ResUNet(ResUNetConfig(in_channels=3, width=8, depth=2, noise_channel=True))
    torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("models") / "noise-test.safetensors"
    save_model(module, path, name="noise-test", softening=3.0)
    return load_model(path)
