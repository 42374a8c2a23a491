"""Tiled inference: exact stitching of pixelwise predictors, progress, early stop, validation."""

from __future__ import annotations

import gc
import itertools
import tracemalloc

import numpy as np
import pytest

from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.tiling import (
    WEIGHT_FLOOR,
    blend_window,
    count_batches,
    count_tiles,
    iter_tiled,
    plan_tiles,
    tile_grid,
    tiled_apply,
)

SHAPES = [(97, 131), (20, 33), (5, 300), (1, 1), (32, 32), (64, 64), (150, 70), (256, 256)]
# prime, smaller than a tile, thin strip, one pixel, exactly a tile (32, 64, 256), multi-tile
TILES = [32, 64, 256]
OVERLAPS = [0.0, 0.25, 0.5, 0.75]
BLENDS = ["gaussian", "none"]


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 50 + 10).astype(np.float32)


def _double(x: np.ndarray) -> np.ndarray:
    return 2 * x


def _ramp(x: np.ndarray) -> np.ndarray:
    """Adds 0..1 ramps along both tile axes: output depends on the position within the tile."""
    ramp_y = np.linspace(0.0, 1.0, x.shape[-2], dtype=np.float32)
    ramp_x = np.linspace(0.0, 1.0, x.shape[-1], dtype=np.float32)
    return x + ramp_x[None, None, None, :] + ramp_y[None, None, :, None]


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize(("tile_size", "overlap"), list(itertools.product(TILES, OVERLAPS)))
def test_pixelwise_predictor_is_stitched_exactly(tile_size, overlap, blend):
    for i, shape in enumerate(SHAPES):
        image = _image((2, *shape), seed=i)
        out = tiled_apply(
            image, _double, tile_size=tile_size, overlap=overlap, blend=blend, batch_size=3
        )
        assert out.shape == image.shape
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, 2 * image, rtol=1e-6, err_msg=f"shape {shape}")


@pytest.mark.parametrize("blend", BLENDS)
def test_identity_on_exact_and_multi_tile_images(blend):
    for shape in [(64, 64), (64, 200), (257, 129)]:
        image = _image((1, *shape))
        out = tiled_apply(image, lambda x: x, tile_size=64, overlap=0.25, blend=blend)
        np.testing.assert_allclose(out, image, rtol=1e-6)


def test_grid_offset_keeps_stitching_exact_and_moves_the_grid():
    image = _image((1, 97, 131))
    base = tile_grid((97, 131), tile_size=32, overlap=0.25)
    for offset in [(12, 12), (5, -7), (100, 3)]:
        out = tiled_apply(image, _double, tile_size=32, overlap=0.25, grid_offset=offset)
        np.testing.assert_allclose(out, 2 * image, rtol=1e-6)
        assert tile_grid((97, 131), tile_size=32, overlap=0.25, grid_offset=offset) != base
    # the offset is taken modulo the stride (24 for 32 px tiles at overlap 0.25)
    assert tile_grid((97, 131), tile_size=32, overlap=0.25, grid_offset=(24, 48)) == base


def test_out_channels_may_differ_from_input_channels():
    image = _image((1, 70, 90))

    def three(x):
        return np.concatenate([x, 2 * x, -x], axis=1)

    out = tiled_apply(image, three, tile_size=32, out_channels=3)
    np.testing.assert_allclose(out, np.concatenate([image, 2 * image, -image]), rtol=1e-6)
    inferred = tiled_apply(image, three, tile_size=32)
    np.testing.assert_array_equal(inferred, out)
    with pytest.raises(ValueError, match="returned 3 channels, expected out_channels=2"):
        tiled_apply(image, three, tile_size=32, out_channels=2)


def _chunks(layout, batch_size):
    """(input shape, tiles in each batch) of a whole-frame run."""
    from napari_astrodenoise.core.tiling import _batches

    rows = slice(0, layout.shape[0])
    return [
        (shape, len(c)) for shape, chunks in _batches(layout, rows, batch_size) for c in chunks
    ]


def test_progress_is_monotone_and_ends_at_total():
    image = _image((1, 100, 130))
    sizes = []

    def predictor(x):
        sizes.append(x.shape[0])
        return x

    total = count_tiles((100, 130), tile_size=32, overlap=0.5)
    gen = iter_tiled(image, predictor, tile_size=32, overlap=0.5, batch_size=5)
    progress = []
    result = drain(gen, progress.append)
    done = [d for d, _ in progress]
    assert all(t == total for _, t in progress)
    assert done == sorted(set(done))
    assert done[-1] == total
    layout = plan_tiles((100, 130), tile_size=32, overlap=0.5)
    assert len(progress) == count_batches(layout, 5) == len(sizes)
    # a lone tile runs beside a copy of itself (never a batch of one), its copy not stitched
    assert max(sizes) == 5 and min(sizes) >= 2
    assert sum(sizes) == total + sum(1 for _, chunks in _chunks(layout, 5) if chunks == 1)
    np.testing.assert_allclose(result, image, rtol=1e-6)


def test_arguments_are_checked_before_the_first_tile_runs():
    with pytest.raises(ValueError, match="tile_size"):
        iter_tiled(_image((1, 40, 40)), _double, tile_size=30)


def test_stopping_early_runs_no_more_batches_and_frees_the_buffers():
    image = _image((1, 512, 512))  # 1 MiB: the accumulator is all it holds, image-sized
    calls = []

    def predictor(x):
        calls.append(1)
        return x

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        gen = iter_tiled(image, predictor, tile_size=64, batch_size=2)
        assert next(gen)[0] == 2
        assert next(gen)[0] == 4
        held = tracemalloc.get_traced_memory()[0] - before
        gen.close()
        del gen
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(calls) == 2
    # the accumulator, no padded copy of the image and no weight map
    assert 0.9 * image.nbytes < held < 1.5 * image.nbytes
    assert after < 0.05 * image.nbytes


def test_memory_does_not_grow_with_the_number_of_tiles():
    image = _image((1, 256, 256))

    def peak(overlap):
        gc.collect()
        tracemalloc.start()
        try:
            tiled_apply(image, _double, tile_size=32, overlap=overlap, batch_size=4)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few = count_tiles((256, 256), tile_size=32, overlap=0.0)
    many = count_tiles((256, 256), tile_size=32, overlap=0.75)
    assert many > 10 * few
    assert peak(0.75) < 1.5 * peak(0.0)
    assert peak(0.75) < 6 * image.nbytes


def test_gaussian_blend_hides_tile_position_effects_better_than_naive_tiles():
    image = _image((1, 150, 170))
    steps = {}
    for blend in BLENDS:
        residual = tiled_apply(image, _ramp, tile_size=64, overlap=0.25, blend=blend) - image
        steps[blend] = max(np.abs(np.diff(residual, axis=ax)).max() for ax in (1, 2))
    assert steps["none"] > 0.9  # each naive seam jumps from the ramp's end to its start
    assert steps["gaussian"] < 0.2 * steps["none"]


def test_edge_tiles_see_mirrored_context_not_zeros():
    image = np.arange(1, 1 + 3 * 41, dtype=np.float32).reshape(1, 3, 41)
    seen = []

    def predictor(x):
        seen.append(x.copy())
        return x

    tiled_apply(image, predictor, tile_size=32, overlap=0.5)
    tiles = np.concatenate(seen)
    assert set(np.unique(tiles)) <= set(np.unique(image))  # reflect padding, even 3 rows


def test_layout_pads_half_the_overlap_and_moves_the_last_tile_inward():
    layout = plan_tiles((310, 310), tile_size=64, overlap=0.25)
    assert layout.stride == 48
    assert layout.pad == ((8, 8), (8, 8))  # (64 - 48) / 2
    assert layout.starts_y == (0, 48, 96, 144, 192, 240, 262)  # 262 = 326 - 64, not padded on
    assert layout.grow == (0, 0)
    assert layout.input_box(0, 262) == (0, 64, 262, 326)
    naive = plan_tiles((300, 300), tile_size=64, overlap=0.25, blend="none")
    assert naive.stride == 64 and naive.pad == ((0, 0), (0, 0))
    assert naive.starts_x == (0, 64, 128, 192, 236)
    small = plan_tiles((5, 300), tile_size=64, overlap=0.25)
    assert small.padded_shape[0] == 64 and small.starts_y == (0,)


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("shape", [(97, 131), (20, 33), (5, 300), (300, 300)])
def test_tile_grid_covers_the_image_within_bounds(shape, blend):
    options = {"tile_size": 64, "overlap": 0.25, "blend": blend, "grid_offset": (7, 30)}
    boxes = tile_grid(shape, **options)
    assert len(boxes) == count_tiles(shape, **options)
    covered = np.zeros(shape, dtype=int)
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]
        assert y1 - y0 <= 64 and x1 - x0 <= 64
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1


def test_a_grid_over_the_image_saves_a_row_of_tiles_and_grows_its_edge_tiles():
    # over the padded 316 px, 7 tiles a side; over the image's 300 px, 6
    layout = plan_tiles((300, 300), tile_size=64, overlap=0.25)
    assert layout.pad == ((8, 8), (8, 8)) and layout.grow == (8, 8)
    assert layout.starts_y == tuple(8 + s for s in (0, 48, 96, 144, 192, 236))
    assert layout.input_box(8, 8) == (0, 72, 0, 72)  # the corner reaches into both pads
    assert layout.input_box(8 + 48, 8 + 236) == (56, 120, 244, 316)
    assert layout.input_box(56, 56) == (56, 120, 56, 120)  # inside: its window
    # MONAI's count at 4096 px, tile 256, overlap 0.25: 21 a side, not 22
    assert count_tiles((4096, 4096), tile_size=256, overlap=0.25) == 21 * 21
    # where the padded grid needs no extra tile it is kept: 2048 px takes 11 either way
    wide = plan_tiles((2048, 2048), tile_size=256, overlap=0.25)
    assert wide.grow == (0, 0) and wide.n_tiles == 11 * 11
    # a shifted grid is laid the way the unshifted one is
    shifted = plan_tiles((300, 300), tile_size=64, overlap=0.25, grid_offset=(24, 24))
    assert shifted.grow == (8, 8)


def test_edge_tiles_grow_into_the_mirror_and_only_their_window_is_stitched():
    image = _image((1, 300, 300), seed=5)
    shapes = []

    def predictor(x):
        shapes.append(x.shape[2:])
        return _ramp(x)

    out = tiled_apply(image, predictor, tile_size=64, overlap=0.25, batch_size=4)
    assert {(64, 64), (72, 64), (64, 72), (72, 72)} <= set(shapes)
    # the image's first pixel is 8 px into the corner tile's grown input on both axes,
    # and only that tile's window covers it
    assert abs(float(out[0, 0, 0] - image[0, 0, 0]) - 2 * 8 / 71) < 1e-5


def test_a_batch_of_grown_edge_tiles_holds_no_more_pixels_than_the_batch_size_allows():
    image = _image((1, 300, 300), seed=6)
    batches = []

    def predictor(x):
        batches.append(x.shape)
        return x

    out = tiled_apply(image, predictor, tile_size=64, overlap=0.25, batch_size=4)
    np.testing.assert_allclose(out, image, rtol=1e-6)
    # the network's memory grows with a batch's pixels: four 64 px tiles' worth at most
    assert all(b * h * w <= 4 * 64 * 64 for b, _, h, w in batches)
    assert {(b, h, w) for b, _, h, w in batches} >= {(4, 64, 64), (3, 72, 72), (3, 64, 72)}
    lone = sum(1 for _, chunks in _chunks(plan_tiles((300, 300), tile_size=64), 4) if chunks == 1)
    assert sum(b for b, *_ in batches) == 36 + lone  # every tile once, a lone one twice
    # batch_size 1: one tile a call, grown or not
    single = []
    tiled_apply(image, lambda x: single.append(x.shape) or x, tile_size=64, batch_size=1)
    assert {s[0] for s in single} == {1} and (1, 1, 72, 72) in single


def test_count_tiles_for_known_geometries():
    assert count_tiles((256, 256), tile_size=256, overlap=0.25, blend="none") == 1
    assert count_tiles((256, 256), tile_size=256, overlap=0.25) == 1  # one tile, grown to 320
    assert count_tiles((20, 33), tile_size=256, overlap=0.75) == 1


def test_blend_window_shape_floor_and_symmetry():
    w = blend_window(64)
    assert w.shape == (64, 64) and w.dtype == np.float32
    np.testing.assert_allclose(w, w[::-1], rtol=0)
    np.testing.assert_allclose(w, w.T, rtol=0)
    assert w.max() == pytest.approx(1.0)
    assert w.min() == pytest.approx(WEIGHT_FLOOR**2)
    np.testing.assert_allclose(w, np.outer(w[32], w[32]) / w[32, 32], rtol=1e-6)  # separable
    narrow = blend_window(64, sigma_scale=0.01)  # would underflow to 0 without the floor
    assert narrow.min() > 0
    assert blend_window(64, sigma_scale=0.25)[0, 32] > w[0, 32]
    np.testing.assert_array_equal(blend_window(32, blend="none"), np.ones((32, 32)))


BAD_ARGS = [
    ({"tile_size": 30}, "tile_size must be a multiple of 16 and at least 32, got 30"),
    ({"tile_size": 16}, "tile_size must be a multiple of 16 and at least 32, got 16"),
    ({"tile_size": 40}, "tile_size must be a multiple of 16"),
    ({"tile_size": 32.0}, "tile_size must be a multiple of 16"),
    ({"overlap": -0.1}, r"overlap must be a fraction of the tile from 0 to 0.75, got -0.1"),
    ({"overlap": 0.8}, "overlap must be a fraction"),
    ({"overlap": "0.25"}, "overlap must be a fraction"),
    ({"blend": "linear"}, "blend must be one of 'gaussian', 'none', got 'linear'"),
    ({"sigma_scale": 0.0}, "sigma_scale must be a positive fraction"),
    ({"sigma_scale": float("nan")}, "sigma_scale must be a positive fraction"),
    ({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
    ({"out_channels": 0}, "out_channels must be a whole number of at least 1"),
    ({"grid_offset": (1,)}, r"grid_offset must be two whole numbers of pixels \(dy, dx\)"),
    ({"grid_offset": (1.5, 0)}, "grid_offset must be two whole numbers"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGS)
def test_bad_options_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiled_apply(_image((1, 40, 40)), _double, **kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((40, 40), np.float32), r"image must be a non-empty \(C, H, W\) array"),
        (np.zeros((1, 0, 40), np.float32), r"image must be a non-empty \(C, H, W\) array"),
        (np.full((1, 40, 40), np.nan, np.float32), "NaN or infinite pixels; fill them"),
        (np.zeros((1, 4, 4), complex), "image must hold real numbers"),
    ],
)
def test_bad_images_are_refused_with_a_clear_message(image, message):
    with pytest.raises(ValueError, match=message):
        tiled_apply(image, _double, tile_size=32)


def test_predictor_returning_the_wrong_shape_is_reported():
    with pytest.raises(ValueError, match=r"predictor must return a \(B, C_out, Ht, Wt\)"):
        tiled_apply(_image((1, 40, 40)), lambda x: x[..., :16, :16], tile_size=32)


def test_shape_of_tile_grid_is_checked():
    with pytest.raises(ValueError, match=r"shape must be the image's \(height, width\)"):
        tile_grid((0, 10), tile_size=32, overlap=0.25)
