"""Training tiles: shapes, determinism, the 80/20 splits, real FITS frames and paired folders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits
from training.data import (
    DataConfig,
    RegionSplit,
    TileDataset,
    bin_image,
    load_fits_folder,
    load_paired_folder,
    read_fits_image,
    scene_split,
)

from napari_astrodenoise.core.noiselevel import noise_sigma
from napari_astrodenoise.core.stretch import fit_stretch

TILE = 32


def _sim_config(**overrides) -> DataConfig:
    base = {"tile": TILE, "fits_dir": None, "real_weight": 0.0, "seed": 7}
    return DataConfig(**{**base, **overrides})


def _sim_dataset(split="train", length=8, epoch=0, **overrides) -> TileDataset:
    return TileDataset(_sim_config(**overrides), split=split, length=length, epoch=epoch)


def test_samples_are_network_space_tensors_of_the_documented_shapes():
    ds = _sim_dataset(length=6)
    x, y = ds[0]
    assert x.shape == (3, TILE, TILE) and y.shape == (4, TILE, TILE)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    for i in range(len(ds)):
        x, y = ds[i]
        assert torch.isfinite(x).all() and torch.isfinite(y).all()
        assert 0.0 <= float(y[3].min()) and float(y[3].max()) <= 1.0


def test_mono_scenes_are_replicated_to_three_identical_channels():
    ds = _sim_dataset(length=12, p_mono=0.5)
    samples = [ds.sample(i) for i in range(len(ds))]
    mono = [s for s in samples if s.channels == 1]
    colour = [s for s in samples if s.channels == 3]
    assert mono and colour
    for s in mono:
        np.testing.assert_array_equal(s.input[0], s.input[1])
        np.testing.assert_array_equal(s.input[0], s.input[2])
        np.testing.assert_array_equal(s.target[0], s.target[2])


def test_same_seed_gives_the_same_tiles_and_other_seeds_or_epochs_do_not():
    a, b = _sim_dataset(length=4), _sim_dataset(length=4)
    for i in (3, 0, 2):  # order of access does not matter
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=0)
    other_seed = _sim_dataset(length=4, seed=8)
    other_epoch = _sim_dataset(length=4, epoch=1)
    assert not torch.equal(a[0][0], other_seed[0][0])
    assert not torch.equal(a[0][0], other_epoch[0][0])


def test_a_train_stream_draws_new_training_tiles_and_keeps_the_validation_ones():
    plain, streamed = _sim_dataset(length=4), _sim_dataset(length=4, train_stream=1)
    assert not torch.equal(plain[0][0], streamed[0][0])
    val, val_streamed = _sim_dataset("val", length=4), _sim_dataset("val", 4, train_stream=1)
    torch.testing.assert_close(val[0], val_streamed[0], rtol=0, atol=0)


def test_tiles_do_not_depend_on_data_loader_workers():
    ds = _sim_dataset(length=4)
    direct = torch.stack([ds[i][0] for i in range(4)])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    via_worker = torch.cat([x for x, _ in loader])
    torch.testing.assert_close(via_worker, direct, rtol=0, atol=0)


def test_input_and_target_share_the_stretch_fitted_on_the_noisy_tile():
    ds = _sim_dataset(length=6, noise={"p_identity": 0.0, "p_low_noise": 0.0})
    for i in range(len(ds)):
        s = ds.sample(i)
        noisy = s.stretch.inverse(s.input[: s.channels])
        refit = fit_stretch(noisy, softening=ds.config.softening)
        assert refit.scale == pytest.approx(s.stretch.scale, rel=1e-3)
        np.testing.assert_allclose(refit.background, s.stretch.background, rtol=1e-4, atol=1e-3)
        assert abs(float(np.median(s.input))) < 0.05  # the noisy tile's sky sits at 0
        # the target went through the same map: it is not re-centred on its own sky
        clean = s.stretch.inverse(s.target[: s.channels])
        assert not np.allclose(fit_stretch(clean).scale, s.stretch.scale, rtol=0.5)


def test_simulated_scene_split_is_disjoint_and_80_20():
    seed = 7
    ids = np.arange(20_000)
    val = np.array([scene_split(seed, int(i)) == "val" for i in ids])
    assert val.mean() == pytest.approx(0.2, abs=0.01)
    train_ds, val_ds = _sim_dataset("train", length=40), _sim_dataset("val", length=10)
    train_ids = {train_ds.sample(i).scene_id for i in range(len(train_ds))}
    val_ids = {val_ds.sample(i).scene_id for i in range(len(val_ds))}
    assert train_ids.isdisjoint(val_ids)
    assert all(scene_split(seed, i) == "train" for i in train_ids)
    assert all(scene_split(seed, i) == "val" for i in val_ids)


@pytest.mark.parametrize("corner", range(4))
def test_region_split_keeps_training_tiles_out_of_the_validation_block(corner):
    region = RegionSplit.build(300, 420, 32, 0.2, corner)
    y0, y1, x0, x1 = region.val_box
    assert (y1 - y0) * (x1 - x0) / (300 * 420) == pytest.approx(0.2, abs=0.02)
    rng = np.random.default_rng(0)
    for _ in range(300):
        y, x = region.sample(rng, "train")
        assert 0 <= y <= 300 - 32 and 0 <= x <= 420 - 32
        assert y + 32 <= y0 or y >= y1 or x + 32 <= x0 or x >= x1
        vy, vx = region.sample(rng, "val")
        assert y0 <= vy and vy + 32 <= y1 and x0 <= vx and vx + 32 <= x1


def test_a_frame_too_small_for_a_validation_tile_is_all_training():
    region = RegionSplit.build(40, 40, 32, 0.2, 0)
    assert region.val_box is None
    assert region.has("train") and not region.has("val")


def test_binning_averages_blocks():
    image = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    binned = bin_image(image, 2)
    assert binned.shape == (2, 2, 3)
    assert binned[1, 0, 0] == pytest.approx(image[1, :2, :2].mean())


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32)).writeto(path)


def test_a_missing_fits_folder_is_skipped_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="not found"):
        assert load_fits_folder(tmp_path / "nope", tile=32, binning=1, fraction=0.2, seed=0) == []


def _floor_only_config(folder, **overrides) -> DataConfig:
    """Real frames of ``folder`` at unit flux scale, topped up to 5 x their own noise by a
    negligible drawn noise: the floor is all the noise a tile gets."""
    return DataConfig(
        tile=TILE,
        fits_dir=str(folder),
        sim_weight=0.0,
        real_weight=1.0,
        real_bin=1,
        real_noise_floor=(5.0, 5.0),
        flux_scale_range=(1.0, 1.0),
        noise={
            "p_identity": 0.0,
            "p_low_noise": 0.0,
            "p_gaussian": 1.0,
            "gaussian_sigma_range": (1e-4, 1e-4),
        },
        **overrides,
    )


def test_real_frames_are_topped_up_to_the_noise_floor(tmp_path):
    rng = np.random.default_rng(1)
    _write(tmp_path / "flat.fits", 1000.0 + rng.normal(0.0, 10.0, (96, 96)))
    config = _floor_only_config(tmp_path)
    ds = TileDataset(config, split="train", length=3)
    for i in range(3):
        s = ds.sample(i)
        assert s.source == "real" and s.kind.endswith("+floor")
        noisy = s.stretch.inverse(s.input[:1])
        assert float(noise_sigma(noisy)[0]) == pytest.approx(50.0, rel=0.15)


def test_channel_gain_rebalances_colour_training_tiles_only():
    clean_targets = {"p_identity": 0.0, "p_low_noise": 0.0}  # targets are the clean tiles
    plain = _sim_dataset(length=16, p_mono=0.5, noise=clean_targets)
    gained = _sim_dataset(length=16, p_mono=0.5, noise=clean_targets, channel_gain=4.0)
    seen = 0
    for i in range(len(plain)):
        a, b = plain.sample(i), gained.sample(i)
        clean_a, clean_b = a.stretch.inverse(a.target[:3]), b.stretch.inverse(b.target[:3])
        if a.channels == 1:  # mono scenes are not rebalanced
            np.testing.assert_array_equal(b.target, a.target)
            continue
        seen += 1
        # the same scene, each channel scaled by its own factor
        gains = np.median(clean_b / clean_a, axis=(1, 2))
        np.testing.assert_allclose(clean_b, clean_a * gains[:, None, None], rtol=1e-3)
        assert np.prod(gains) == pytest.approx(1.0, rel=0.05)  # geometric mean 1
        assert gains.max() / gains.min() > 1.2
        assert (gains > 1 / 4.5).all() and (gains < 4.5).all()
    assert seen >= 3
    val_plain = _sim_dataset(split="val", length=4, p_mono=0.0)
    val_gained = _sim_dataset(split="val", length=4, p_mono=0.0, channel_gain=4.0)
    for i in range(len(val_plain)):
        np.testing.assert_array_equal(val_gained.sample(i).target, val_plain.sample(i).target)
    for bad in (0.9, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="channel_gain"):
            DataConfig(channel_gain=bad)


def test_channel_gain_scales_a_real_frames_noise_floor_with_its_channel(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path / "cube.fits", 1000.0 + rng.normal(0.0, 10.0, (3, 96, 96)))
    config = _floor_only_config(tmp_path, channel_gain=4.0)
    ds = TileDataset(config, split="train", length=3)
    for i in range(3):
        s = ds.sample(i)
        noisy = s.stretch.inverse(s.input)
        level = np.median(noisy, axis=(1, 2))
        assert level.max() / level.min() > 1.2  # rebalanced
        # each channel topped up to 5 x its own (rebalanced) noise: 5 % of its level
        np.testing.assert_allclose(noise_sigma(noisy) / level, 0.05, rtol=0.15)


def test_real_fits_tiles_from_the_shared_training_folder(shared_fits_dir):
    folder = shared_fits_dir / "train"
    frames = load_fits_folder(folder, tile=64, binning=2, fraction=0.2, seed=0)
    names = {f.name: f for f in frames}
    assert names["ngc6976_sdss_irg_rgbcube"].clean.shape[0] == 3
    assert names["m51_kpno_b600s"].clean.shape == (1, 256, 256)  # 512 x 512 binned 2 x 2
    # co-registered files share their validation block
    assert (
        names["ngc6976_sdss_g_reproj"].region.val_box
        == names["ngc6976_sdss_irg_rgbcube"].region.val_box
    )
    config = DataConfig(tile=64, fits_dir=str(folder), sim_weight=0.0, real_weight=1.0)
    for split in ("train", "val"):
        ds = TileDataset(config, split=split, length=6, real_frames=frames, paired_frames=[])
        for i in range(len(ds)):
            s = ds.sample(i)
            assert s.source == "real" and s.input.shape == (3, 64, 64)
            assert np.isfinite(s.input).all() and np.isfinite(s.target).all()
            box = names[s.name].region.val_box
            if box is not None:
                y, x = s.position
                inside = box[0] <= y and y + 64 <= box[1] and box[2] <= x and x + 64 <= box[3]
                outside = y + 64 <= box[0] or y >= box[1] or x + 64 <= box[2] or x >= box[3]
                assert inside if split == "val" else outside


def test_fits_reader_takes_mono_and_colour_cubes(tmp_path):
    _write(tmp_path / "mono.fits", np.ones((10, 12)))
    _write(tmp_path / "cube.fits", np.ones((3, 10, 12)))
    _write(tmp_path / "stack.fits", np.ones((5, 10, 12)))
    assert read_fits_image(tmp_path / "mono.fits").shape == (1, 10, 12)
    assert read_fits_image(tmp_path / "cube.fits").shape == (3, 10, 12)
    assert read_fits_image(tmp_path / "stack.fits") is None


@pytest.fixture
def paired_folder(tmp_path):
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:80, :96]
    mono = 500.0 + 2.0 * xx + 1.0 * yy
    colour = np.stack([mono, 0.8 * mono, 1.2 * mono])
    for name, clean in (("mono", mono), ("colour", colour)):
        _write(tmp_path / "clean" / f"{name}.fits", clean)
        _write(tmp_path / "noisy" / f"{name}.fits", clean + rng.normal(0.0, 20.0, clean.shape))
    _write(tmp_path / "noisy" / "orphan.fits", mono)
    return tmp_path


def test_paired_folder_gives_its_noisy_input_and_clean_target(paired_folder):
    with pytest.warns(UserWarning, match="orphan"):
        frames = load_paired_folder(paired_folder, tile=TILE, binning=1, fraction=0.2, seed=0)
    assert sorted(f.name for f in frames) == ["colour", "mono"]
    config = DataConfig(
        tile=TILE, fits_dir=None, paired_dir=str(paired_folder), sim_weight=0.0, paired_weight=1.0
    )
    for split in ("train", "val"):
        ds = TileDataset(config, split=split, length=6, real_frames=[], paired_frames=frames)
        for i in range(len(ds)):
            s = ds.sample(i)
            assert s.source == "paired" and s.kind == "paired"
            assert s.channels == (3 if s.name == "colour" else 1)
            # input - target is the pair's own Gaussian noise, stretched: std 1 / softening
            resid = s.input - s.target[:3]
            assert float(resid.std()) == pytest.approx(1.0 / config.softening, rel=0.2)


def test_a_pair_of_different_shapes_is_refused(tmp_path):
    _write(tmp_path / "clean" / "a.fits", np.ones((40, 40)))
    _write(tmp_path / "noisy" / "a.fits", np.ones((40, 48)))
    with pytest.raises(ValueError, match="differ"):
        load_paired_folder(tmp_path, tile=TILE, binning=1, fraction=0.2, seed=0)


def test_config_rejects_unknown_keys_and_bad_tiles():
    with pytest.raises(ValueError, match="unknown"):
        DataConfig.from_dict({"tiles": 64})
    with pytest.raises(ValueError, match="multiple of 8"):
        DataConfig(tile=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = TileDataset(DataConfig(tile=TILE, fits_dir=""), split="train", length=1)
    assert ds.source_p["real"] == 0.0  # an empty path means no real frames, and no warning


def test_a_noise_map_comes_as_a_fourth_input_channel_and_changes_nothing_else():
    plain = _sim_dataset(length=6, p_mono=0.5)
    mapped = _sim_dataset(length=6, p_mono=0.5, noise_map=True)
    for i in range(len(plain)):
        a, b = plain.sample(i), mapped.sample(i)
        assert b.input.shape == (4, TILE, TILE)
        np.testing.assert_array_equal(b.input[:3], a.input)  # the same draws
        np.testing.assert_array_equal(b.target, a.target)
        sigma = b.input[3]
        assert np.isfinite(sigma).all() and (sigma > 0).all()
        assert np.median(sigma) < 2.0  # in units of the sky's noise


def test_stretch_jitter_rescales_training_tiles_only_and_keeps_the_same_data():
    plain = _sim_dataset(length=12, p_mono=0.5)
    jittered = _sim_dataset(length=12, p_mono=0.5, stretch_jitter=2.0)
    ratios = []
    for i in range(len(plain)):
        a, b = plain.sample(i), jittered.sample(i)
        ratios.append(b.stretch.scale / a.stretch.scale)
        # the same noisy and clean tiles, only taken to network space on another scale
        np.testing.assert_allclose(
            b.stretch.inverse(b.input), a.stretch.inverse(a.input), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            b.stretch.inverse(b.target[:3]), a.stretch.inverse(a.target[:3]), rtol=1e-4, atol=1e-4
        )
    ratios = np.array(ratios)
    assert (ratios >= 0.5 - 1e-9).all() and (ratios <= 2.0 + 1e-9).all()
    assert ratios.min() < 0.8 and ratios.max() > 1.25  # log-uniform over [1/2, 2]: spread
    val_plain = _sim_dataset(split="val", length=4)
    val_jittered = _sim_dataset(split="val", length=4, stretch_jitter=2.0)
    for i in range(len(val_plain)):
        np.testing.assert_array_equal(val_jittered.sample(i).input, val_plain.sample(i).input)
        np.testing.assert_array_equal(val_jittered.sample(i).target, val_plain.sample(i).target)
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="stretch_jitter"):
            DataConfig(stretch_jitter=bad)
