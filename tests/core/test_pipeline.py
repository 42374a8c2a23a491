"""denoise(): layouts, exactness, NaNs, strength re-blending, progress, seams, provenance."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core import pipeline
from napari_astrodenoise.core.options import defaults
from napari_astrodenoise.core.pipeline import denoise, iter_denoise, seam_map
from napari_astrodenoise.core.predictor import TilePredictor
from napari_astrodenoise.core.progress import drain


@pytest.mark.parametrize(
    ("shape", "channel_axis"),
    [((45, 70), None), ((3, 40, 52), 0), ((40, 52, 3), -1), ((5, 33, 33), 0), ((1, 30, 30), 0)],
    ids=["mono", "rgb-first", "rgb-last", "stack-5", "single-plane"],
)
@pytest.mark.parametrize("ensemble", [1, 8])
def test_identity_model_returns_the_input_bit_for_bit(
    identity_model, shape, channel_axis, ensemble, sky
):
    img = sky(shape)
    out = denoise(
        img,
        model=identity_model,
        tile_size=32,
        overlap=0.25,
        channel_axis=channel_axis,
        ensemble=ensemble,
    )
    assert out.shape == img.shape
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    ("level", "sigma"),
    [(40_000.0, 50.0), (0.0, 1e-4), (-3.0, 0.2)],
    ids=["counts", "tiny", "negative"],
)
def test_data_range_is_never_clipped_or_rescaled(random_model, level, sigma, sky):
    img = sky((48, 48), level=level, sigma=sigma)
    out = denoise(img, model=random_model, tile_size=32)
    # the output lives in the input's units: its level follows the input's, not [0, 1]
    assert abs(np.median(out) - level) < 5 * sigma
    assert np.abs(out - img).max() < 50 * sigma


def test_nan_and_inf_come_back_where_they_were(random_model, sky):
    img = sky((3, 50, 60))
    img[0, 10:14, 20:30] = np.nan
    img[1, 30, 5] = np.inf
    img[2, 0, 0] = -np.inf
    out = denoise(img, model=random_model, tile_size=32, channel_axis=0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(img))
    assert out[1, 30, 5] == np.inf and out[2, 0, 0] == -np.inf
    assert np.isfinite(out[np.isfinite(img)]).all()


def test_strength_and_protection_reblend_without_running_the_network(
    random_model, monkeypatch, sky
):
    img = sky((3, 40, 40))
    result = drain(iter_denoise(img, model=random_model, tile_size=32, channel_axis=0))
    calls = []
    monkeypatch.setattr(TilePredictor, "__call__", lambda *a: calls.append(a))
    full = result.output()
    np.testing.assert_array_equal(result.output(strength=0.0), img)
    half = result.output(strength=0.5)
    np.testing.assert_allclose(half, img + 0.5 * (full - img), rtol=1e-6, atol=1e-3)
    # under a full star mask, full protection keeps the input
    result.star_mask = np.ones((40, 40), np.float32)
    np.testing.assert_allclose(result.output(star_protection=1.0), img, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.output(star_protection=0.5), half, rtol=1e-6, atol=1e-3)
    assert calls == []
    assert result.provenance(strength=0.5)["provenance"]["ADSTRNTH"][0] == 0.5


def test_star_protection_keeps_star_cores_closer_to_the_input(random_model, sky):
    img = sky((64, 64), sigma=5.0)
    yy, xx = np.mgrid[:64, :64]
    img += 20_000 * np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / (2 * 1.5**2))
    result = drain(iter_denoise(img, model=random_model, tile_size=32))
    plain = result.output(star_protection=0.0)
    kept = result.output(star_protection=1.0)
    core = (slice(28, 33), slice(30, 35))
    assert result.star_mask[30, 32] > 0.9
    assert np.abs(kept[core] - img[core]).max() < 0.2 * np.abs(plain[core] - img[core]).max()


def test_progress_counts_up_to_the_total_and_the_run_can_stop_early(random_model, sky):
    img = sky((3, 100, 100))
    gen = iter_denoise(img, model=random_model, tile_size=32, batch_size=2, channel_axis=0)
    steps = [next(gen) for _ in range(2)]
    gen.close()  # a Cancel between batches
    assert steps[0][0] < steps[1][0] <= steps[1][1]
    seen = list(iter_denoise(img, model=random_model, tile_size=32, batch_size=2, channel_axis=0))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1]


def test_provenance_records_model_hash_and_settings(random_model, sky):
    result = drain(iter_denoise(sky((40, 40)), model=random_model, tile_size=32, overlap=0.5))
    meta = result.provenance()
    cards = meta["provenance"]
    assert cards["ADMSHA"][0] == random_model.sha256
    assert cards["ADOVERLP"][0] == 0.5 and cards["ADTILE"][0] == 32
    assert cards["ADFLUXLK"][0] == defaults()["flux_lock"]
    assert cards["ADENSMBL"][0] == 1
    assert cards["ADCHGLIM"][0] == defaults()["change_limit"]
    assert cards["ADPKCAP"][0] == defaults()["peak_cap"]
    assert set(result.settings["noise_profile"]) == {"sky", "floor", "slope", "tail"}
    assert all(len(key) <= 8 for key in cards)
    assert random_model.sha256[:16] in meta["history"][0]


def test_gaussian_blending_hides_seams_that_naive_tiles_show(random_model, sky):
    img = sky((3, 160, 160), sigma=10.0)
    smooth = seam_map(img, model=random_model, tile_size=64, overlap=0.25, channel_axis=0)
    naive = seam_map(img, model=random_model, tile_size=64, blend="none", channel_axis=0)
    assert smooth.diff.shape == (3, 160, 160)  # the caller's layout
    mono = seam_map(img[0], model=random_model, tile_size=64)
    assert mono.diff.shape == (160, 160)
    assert smooth.seam_sigma < 0.5 * naive.seam_sigma


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": 1.5}, "strength must be between 0 and 1"),
        ({"star_protection": -0.1}, "star_protection must be between 0 and 1"),
        ({"overlap": 0.9}, "overlap must be a fraction of the tile from 0 to 0.75"),
        ({"blend": "box"}, "blend must be one of"),
        ({"channel_axis": None, "image": np.zeros((3, 8, 8))}, "mono image must be 2-D"),
        ({"star_mask": np.zeros((3, 3))}, "star_mask must have shape"),
        ({"flux_lock": -1.0}, "flux_lock must be a number of pixels >= 0"),
        ({"ensemble": 3}, "ensemble must be one of"),
        ({"flux_lock": float("nan")}, "flux_lock must be a number of pixels >= 0"),
        ({"change_limit": -3.0}, "change_limit must be a number of noise sigmas >= 0"),
        ({"change_limit": float("inf")}, "change_limit must be a number of noise sigmas"),
        ({"peak_cap": -1}, "peak_cap must be a whole number of pixels >= 0"),
        ({"peak_cap": 1.5}, "peak_cap must be a whole number of pixels"),
        ({"peak_cap": True}, "peak_cap must be a whole number of pixels"),
    ],
)
def test_bad_arguments_get_a_clear_message(random_model, kwargs, message):
    image = kwargs.pop("image", np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match=message):
        denoise(image, model=random_model, tile_size=32, **kwargs)


def test_mono_goes_through_the_colour_model_as_grey_and_comes_back_averaged(
    random_model, sky, after_lock_off
):
    grey = sky((32, 32), seed=4)  # one tile, so no blending between the two runs
    # the network path alone: the change limit, star refit and peak cap work per channel
    opts = {"model": random_model, "tile_size": 32, **after_lock_off}
    out_mono = denoise(grey, **opts)
    out_rgb = denoise(np.stack([grey] * 3), channel_axis=0, **opts)
    # mono = inverse(mean of the three network channels); the stretch is monotonic, so the
    # mono answer lies between the channels of the same grey frame run as colour
    eps = 1e-3
    assert (out_mono >= out_rgb.min(axis=0) - eps).all()
    assert (out_mono <= out_rgb.max(axis=0) + eps).all()
    assert np.abs(out_mono - grey).max() > 0.1  # and the random model did change it


@pytest.mark.parametrize("shape", [(40, 52), (41, 53), (2, 2)], ids=["even", "odd", "2x2"])
def test_bayer_mosaic_round_trips_bit_for_bit_through_its_sub_planes(identity_model, shape, sky):
    img = sky(shape)
    out = denoise(img, model=identity_model, tile_size=32, bayer=True)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def test_bayer_mosaic_never_mixes_pixels_behind_different_filters(random_model):
    rng = np.random.default_rng(7)
    mosaic = rng.normal(5000, 20, size=(64, 64)).astype(np.float32)
    mosaic[0::2, 0::2] = rng.normal(1000, 20, size=(32, 32))  # the red filter sees far less
    out = denoise(mosaic, model=random_model, tile_size=32, bayer=True)
    assert abs(np.median(out[0::2, 0::2]) - 1000) < 20
    assert abs(np.median(out[1::2, 1::2]) - 5000) < 20
    with pytest.raises(ValueError, match="bayer=True needs a 2-D raw mosaic"):
        denoise(np.zeros((3, 8, 8)), model=random_model, channel_axis=0, bayer=True)


# ------------------------------------------------------------------ noise-channel models


def _noise_channel_model(tmp_path_factory, name: str, *, identity: bool):
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    torch.manual_seed(1)
    module = ResUNet(ResUNetConfig(width=8, depth=2, noise_channel=True))
    if not identity:
        torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("models") / f"{name}.safetensors"
    save_model(module, path, name=name, softening=3.0)
    return load_model(path)


@pytest.fixture(scope="module")
def noise_models(tmp_path_factory):
    """(identity, random) small ResUNets that take the noise map as a 4th input channel."""
    return (
        _noise_channel_model(tmp_path_factory, "noise-identity-test", identity=True),
        _noise_channel_model(tmp_path_factory, "noise-random-test", identity=False),
    )


@pytest.mark.parametrize(("shape", "channel_axis"), [((45, 70), None), ((3, 40, 52), 0)])
def test_a_noise_channel_identity_model_returns_the_input_bit_for_bit(
    noise_models, shape, channel_axis, sky
):
    img = sky(shape)
    img.flat[7] = np.nan
    out = denoise(img, model=noise_models[0], tile_size=32, channel_axis=channel_axis)
    np.testing.assert_array_equal(out, img)


def test_a_noise_channel_model_is_given_the_frames_noise_map(noise_models, monkeypatch, sky):
    img = sky((3, 64, 64), sigma=10.0)
    opts = {"model": noise_models[1], "tile_size": 32, "channel_axis": 0}
    result = drain(iter_denoise(img, **opts))
    assert set(result.settings["noise_prefit"]) == {"sky", "floor", "slope"}
    base = result.output()
    calls = []
    real_map = pipeline.noise_map

    def doubled(*args, **kwargs):
        calls.append(args[0].shape)
        return 2.0 * real_map(*args, **kwargs)

    monkeypatch.setattr(pipeline, "noise_map", doubled)
    changed = denoise(img, **opts)
    assert calls == [(3, 64, 64)]  # once, on the whole frame
    assert np.abs(changed - base).max() > 1e-3  # the network sees the map
    monkeypatch.undo()
    plain = drain(iter_denoise(img, model="astrodenoise-quick", tile_size=32, channel_axis=0))
    assert "noise_prefit" not in plain.settings  # only models with the channel get one


def test_a_noise_channel_model_tiles_without_seams(noise_models, sky):
    img = sky((3, 160, 160), sigma=10.0)
    model = noise_models[1]
    smooth = seam_map(img, model=model, tile_size=64, overlap=0.25, channel_axis=0)
    naive = seam_map(img, model=model, tile_size=64, blend="none", channel_axis=0)
    assert smooth.diff.shape == (3, 160, 160)
    assert smooth.noise_sigma == pytest.approx(10.0, rel=0.1)  # the image's, not the map's
    assert smooth.seam_sigma < 0.5 * naive.seam_sigma
