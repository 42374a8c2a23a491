"""Row strips change no result: the engine in strips of a few rows equals it on whole planes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_astrodenoise.core import strips, tiling
from napari_astrodenoise.core.pipeline import iter_denoise
from napari_astrodenoise.core.progress import drain


def _frame(shape, seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = 800 + rng.normal(0, 9, size=shape)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    for y, x, flux in ((15, 20, 5000.0), (60, 33, 900.0), (40, 70, 30000.0)):
        data = data + flux * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
    data = data.astype(np.float32)
    data[..., 30, 11] = np.nan
    data[..., 61, 4] = np.inf
    return data


def _result(image, model, **kwargs):
    result = drain(iter_denoise(image, model=model, tile_size=32, **kwargs))
    return result.output(), result.model_mask, result.settings


@pytest.mark.parametrize(
    ("shape", "channel_axis", "options"),
    [
        ((77, 90), None, {}),
        ((77, 90), None, {"lock_threshold": 0.0, "peak_cap": 3}),
        ((3, 77, 90), 0, {"star_protection": 0.5, "strength": 0.7}),
        ((78, 90), None, {"bayer": True}),
    ],
    ids=["mono", "mono-strict-lock", "colour-protected", "bayer"],
)
def test_strips_of_a_few_rows_give_the_whole_planes_result_bit_for_bit(
    random_model, monkeypatch, shape, channel_axis, options
):
    image = _frame(shape)
    whole = _result(image, random_model, channel_axis=channel_axis, **options)
    monkeypatch.setattr(strips, "STRIP_PIXELS", 90 * 5)  # 5 rows, or a halo's height
    striped = _result(image, random_model, channel_axis=channel_axis, **options)
    np.testing.assert_array_equal(striped[0], whole[0])
    np.testing.assert_array_equal(striped[1], whole[1])
    assert striped[2]["noise_profile"] == whole[2]["noise_profile"]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("pad", [0, 1, 5, 16])
def test_tiles_mirror_the_image_edges_as_numpy_pads(n, pad):
    index = np.arange(-pad, n + pad)
    line = np.arange(n) * 10
    expected = np.pad(line, pad, mode="reflect")
    np.testing.assert_array_equal(line[tiling._reflect_index(index, n)], expected)


@pytest.mark.parametrize("cores", [1, 2, 3, 8])
def test_filter_in_place_is_the_whole_planes_filter(monkeypatch, cores):
    monkeypatch.setattr(strips.os, "cpu_count", lambda: cores)  # waves of 1, 2, 3, 8 strips
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(101, 37)).astype(np.float32)
    expected = plane - gaussian_filter(plane, 2.5, mode="reflect")
    monkeypatch.setattr(strips, "STRIP_PIXELS", 37 * 3)
    radius = int(4 * 2.5 + 0.5)

    def compute(read, own):
        return gaussian_filter(plane[read], 2.5, mode="reflect")[own]

    def apply(rows, low):
        plane[rows] -= low

    strips.filter_in_place(plane, radius, compute, apply)
    np.testing.assert_array_equal(plane, expected)


@pytest.mark.parametrize("cores", [1, 3])
def test_strips_on_threads_each_run_once(monkeypatch, cores):
    monkeypatch.setattr(strips.os, "cpu_count", lambda: cores)
    seen = []
    strips.for_each_strip(10, 3, seen.append)
    assert sorted((s.start, s.stop) for s in seen) == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_tiles_take_the_fill_value_where_the_image_is_not_finite():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 50, 45)).astype(np.float32)
    image[0, 3, 4] = np.nan
    image[1, 40, 44] = -np.inf
    filled = np.where(np.isfinite(image), image, np.float32([5.0, -2.0])[:, None, None])
    kwargs = {"tile_size": 32, "overlap": 0.5, "batch_size": 3}
    with_fill = tiling.tiled_apply(image, lambda x: x * 2, fill=[5.0, -2.0], **kwargs)
    prefilled = tiling.tiled_apply(filled, lambda x: x * 2, **kwargs)
    np.testing.assert_array_equal(with_fill, prefilled)
    np.testing.assert_allclose(with_fill, 2 * filled, rtol=1e-6)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiling.tiled_apply(image, lambda x: x, **kwargs)


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (2, 2), (40, 3), (64, 61)])
@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("mode", ["nearest", "reflect"])
def test_square_extremes_are_scipys_filters_and_opening_bit_for_bit(shape, radius, mode):
    from scipy.ndimage import grey_opening, maximum_filter, minimum_filter

    plane = np.random.default_rng(radius).normal(size=shape).astype(np.float32)
    size = 2 * radius + 1
    np.testing.assert_array_equal(
        strips.square_max(plane, radius), maximum_filter(plane, size=size, mode=mode)
    )
    np.testing.assert_array_equal(
        strips.square_min(plane, radius), minimum_filter(plane, size=size, mode=mode)
    )
    np.testing.assert_array_equal(
        strips.square_max(strips.square_min(plane, radius), radius),
        grey_opening(plane, size=(size, size), mode=mode),
    )
