"""What the engine takes and what it says: any scale, masked arrays, refused inputs, no-ops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_astrodenoise.core.pipeline import denoise, iter_denoise
from napari_astrodenoise.core.progress import drain


def _star_field(shape=(64, 72), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = 300 + rng.normal(0, 6, size=shape)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    for y, x, flux in ((20, 30, 3000.0), (45, 12, 800.0), (50, 60, 10000.0)):
        data = data + flux * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 5.0)
    return data.astype(np.float32)


def _run(image, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that changes something says nothing
        return drain(iter_denoise(image, model=model, tile_size=32, **kwargs))


@pytest.mark.parametrize("k", [1e-30, 1e-22, 1e-9, 3.7, 1e9, 1e22, 1e30])
def test_denoising_commutes_with_the_data_scale(random_model, k):
    x = _star_field()
    x[5, 7] = np.nan
    ref = _run(x, random_model, precision="fp32")
    scaled = _run((x * k).astype(np.float32), random_model, precision="fp32")
    expected = k * ref.output().astype(np.float64)
    out = scaled.output().astype(np.float64)
    assert np.isnan(out[5, 7])
    finite = np.isfinite(expected)
    # float32 precision of the data: k * x itself is rounded before the run
    np.testing.assert_allclose(out[finite], expected[finite], rtol=0, atol=2e-6 * k * 1e4)
    assert not np.array_equal(scaled.output(), (x * k).astype(np.float32), equal_nan=True)
    assert "unchanged" not in scaled.settings
    stretch, ref_stretch = scaled.settings["stretch"], ref.settings["stretch"]
    assert stretch["scale"] == pytest.approx(k * ref_stretch["scale"], rel=1e-5)


@pytest.mark.parametrize("k", [1e-30, 3.7, 1e30])
def test_bf16_network_commutes_with_the_data_scale_to_its_own_rounding(random_model, k):
    # the bf16 network rounds its inner levels to 8 bits of mantissa: a rescaled input,
    # itself rounded to float32, may flip a rounding there; the change stays far below the noise
    x = _star_field()  # sky noise sigma 6
    ref = _run(x, random_model, precision="bf16")
    scaled = _run((x * k).astype(np.float32), random_model, precision="bf16")
    diff = np.abs(scaled.output() / np.float64(k) - ref.output())
    assert diff.max() <= 0.25 * 6.0
    assert np.sqrt(np.mean(diff**2)) <= 0.01 * 6.0


def test_a_masked_array_has_its_mask_ignored_and_restored(random_model):
    x = _star_field()
    mask = np.zeros(x.shape, bool)
    mask[10:14, 40:50] = True
    mask[50, 60] = True  # a star's core
    masked = np.ma.MaskedArray(x, mask=mask)
    out = denoise(masked, model=random_model, tile_size=32)
    assert isinstance(out, np.ma.MaskedArray)
    np.testing.assert_array_equal(np.ma.getmaskarray(out), mask)
    np.testing.assert_array_equal(out.data[mask], x[mask])  # the input's values come back
    as_nan = np.where(mask, np.float32(np.nan), x)
    plain = denoise(as_nan, model=random_model, tile_size=32)
    np.testing.assert_array_equal(out.data[~mask], plain[~mask])
    assert not np.array_equal(out.data[~mask], x[~mask])


def test_complex_data_are_refused(random_model):
    with pytest.raises(ValueError, match="complex data"):
        denoise(_star_field().astype(np.complex64), model=random_model)
    with pytest.raises(ValueError, match="complex data"):
        denoise(np.ma.MaskedArray(_star_field().astype(complex)), model=random_model)


@pytest.mark.parametrize(
    ("shape", "channel_axis", "message"),
    [
        ((3, 40, 48), -1, "does not match"),
        ((40, 48, 3), 0, "does not match"),
        ((40, 48), 0, "must be 3-D"),
        ((3, 40, 48), True, "whole number"),
        ((3, 40, 48), 1.0, "whole number"),
        ((3, 40, 48), 3, "-3..2"),
    ],
)
def test_a_channel_axis_that_does_not_match_the_data_is_refused(
    random_model, shape, channel_axis, message
):
    with pytest.raises(ValueError, match=message):
        denoise(np.ones(shape, np.float32), model=random_model, channel_axis=channel_axis)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.full((40, 40), 7.0, np.float32), "the image is constant"),
        (np.full((40, 40), np.nan, np.float32), "the image has no finite pixel"),
    ],
    ids=["constant", "all-nan"],
)
def test_an_output_equal_to_the_input_is_said_in_a_warning_and_the_provenance(
    random_model, image, reason
):
    with pytest.warns(UserWarning, match=f"the output equals the input: {reason}"):
        result = drain(iter_denoise(image, model=random_model, tile_size=32))
    np.testing.assert_array_equal(result.output(), image)
    meta = result.provenance()
    assert meta["provenance"]["ADSAME"][0] is True
    assert any(reason in line for line in meta["history"])


def test_a_network_that_changes_nothing_is_named_as_the_reason(identity_model):
    colour = np.stack([_star_field(seed=s) for s in range(3)])  # no mono averaging: exact 0
    with pytest.warns(UserWarning, match="the network changed nothing"):
        denoise(colour, model=identity_model, tile_size=32, channel_axis=0)


def test_a_run_that_changes_the_image_has_no_unchanged_card(random_model):
    result = _run(_star_field(), random_model)
    assert "ADSAME" not in result.provenance()["provenance"]


def test_take_output_is_output_over_the_prediction(random_model):
    x = _star_field()
    result = _run(x, random_model, star_protection=0.5, strength=0.8)
    expected = result.output()
    prediction = result.prediction
    taken = result.take_output()
    np.testing.assert_array_equal(taken, expected)
    assert np.shares_memory(taken, prediction)
    with pytest.raises(ValueError, match="take_output"):
        result.output()
