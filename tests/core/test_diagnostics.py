"""Seam diagnostics: seamless predictors read ~0, a real CNN shows seams, Gaussian hides them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.diagnostics import SeamReport, iter_measure_seams, measure_seams
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.tiling import count_tiles

torch = pytest.importorskip("torch")


def _noise_image(shape=(1, 120, 136), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def cnn():
    """A small random zero-padded conv stack: its output near a tile edge depends on context."""
    gen = torch.Generator().manual_seed(0)
    layers = []
    for c_in, c_out in [(1, 8), (8, 8), (8, 1)]:
        conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.4)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.4)
        layers += [conv, torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers[:-1]).eval()

    def predictor(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return predictor


@pytest.mark.parametrize("reference", ["shifted", "whole"])
def test_gaussian_seams_sit_far_below_naive_seams_for_a_cnn(cnn, reference):
    image = _noise_image()
    reports = {
        blend: measure_seams(
            image,
            cnn,
            tile_size=32,
            overlap=0.25,
            blend=blend,
            batch_size=16,
            reference=reference,
            noise_sigma=1.0,
        )
        for blend in ("gaussian", "none")
    }
    assert reports["none"].seam_sigma > 0.01  # naive tiles do show seams
    assert reports["gaussian"].seam_sigma < 0.1 * reports["none"].seam_sigma
    assert reports["gaussian"].peak_sigma < 0.1 * reports["none"].peak_sigma


def test_shifted_and_whole_references_agree_on_seam_strength(cnn):
    image = _noise_image()
    shifted = measure_seams(image, cnn, tile_size=32, blend="none", noise_sigma=1.0)
    whole = measure_seams(
        image, cnn, tile_size=32, blend="none", noise_sigma=1.0, reference="whole"
    )
    assert shifted.seam_sigma == pytest.approx(whole.seam_sigma, rel=0.5)


@pytest.mark.parametrize("reference", ["shifted", "whole"])
@pytest.mark.parametrize("blend", ["gaussian", "none"])
def test_pixelwise_predictors_have_no_seams(reference, blend):
    image = _noise_image((2, 77, 101)) * 3 + 100
    for predictor in (lambda x: x, lambda x: 2 * x):
        report = measure_seams(
            image,
            predictor,
            tile_size=32,
            overlap=0.25,
            blend=blend,
            reference=reference,
            noise_sigma=3.0,
        )
        assert report.seam_sigma < 1e-4
        assert report.peak_sigma < 1e-4
        np.testing.assert_allclose(report.diff, 0.0, atol=1e-3)


def test_report_shapes_dtypes_and_settings(cnn):
    image = _noise_image((1, 50, 70))
    report = measure_seams(image, cnn, tile_size=32, overlap=0.5, noise_sigma=2.0)
    assert isinstance(report, SeamReport)
    assert report.diff.shape == image.shape and report.diff.dtype == np.float32
    assert isinstance(report.seam_sigma, float) and isinstance(report.noise_sigma, float)
    assert report.noise_sigma == 2.0
    assert report.reference == "shifted"
    assert (report.tile_size, report.overlap, report.blend) == (32, 0.5, "gaussian")
    rms = np.sqrt(np.mean(report.diff.astype(np.float64) ** 2))
    assert report.seam_sigma == pytest.approx(rms / np.sqrt(2) / 2.0)  # one grid, in sigmas


def test_per_channel_noise_and_changed_channel_count():
    image = _noise_image((2, 40, 60))

    def mix(x):  # 2 channels in, 3 out, with a tile-position ramp so seams exist
        ramp = np.linspace(0, 1, x.shape[-1], dtype=np.float32)
        return np.concatenate([x[:, :1], x[:, :1] + ramp, x[:, 1:] - ramp], axis=1)

    report = measure_seams(image, mix, tile_size=32, blend="none", noise_sigma=[1.0, 2.0, 4.0])
    assert report.diff.shape == (3, 40, 60)
    np.testing.assert_array_equal(report.noise_sigma_per_channel, [1.0, 2.0, 4.0])
    per = report.seam_sigma_per_channel
    assert per[0] < 1e-6 and per[1] == pytest.approx(2 * per[2], rel=1e-3)
    assert report.seam_sigma == pytest.approx(np.sqrt(np.mean(per**2)))
    with pytest.raises(ValueError, match="noise_sigma has 2 values but the predictor returns 3"):
        measure_seams(image, mix, tile_size=32, noise_sigma=[1.0, 2.0])


def test_progress_counts_both_runs_and_ends_at_total():
    image = _noise_image((1, 60, 90))
    gen = iter_measure_seams(image, lambda x: x, tile_size=32, batch_size=2, noise_sigma=1.0)
    steps = []
    report = drain(gen, steps.append)
    total = -(-count_tiles((60, 90), tile_size=32, overlap=0.25) // 2) + -(
        -count_tiles((60, 90), tile_size=32, overlap=0.25, grid_offset=(12, 12)) // 2
    )
    assert [d for d, _ in steps] == list(range(1, total + 1))
    assert all(t == total for _, t in steps)
    assert isinstance(report, SeamReport)
    whole = list(iter_measure_seams(image, lambda x: x, tile_size=32, reference="whole"))
    assert whole[-1][0] == whole[-1][1]


def test_whole_reference_gets_one_padded_call_with_sides_a_multiple_of_16():
    image = _noise_image((1, 37, 50))
    shapes = []

    def predictor(x):
        shapes.append(x.shape)
        return x

    measure_seams(
        image, predictor, tile_size=64, batch_size=64, reference="whole", noise_sigma=1.0
    )
    tile_calls, whole_call = shapes[:-1], shapes[-1]
    assert all(s[2:] == (64, 64) for s in tile_calls)
    assert whole_call[0] == 1 and whole_call[2] % 16 == 0 and whole_call[3] % 16 == 0
    assert whole_call[2] >= 37 + 16 and whole_call[3] >= 50 + 16  # 8 px of context each side
    shapes.clear()
    with pytest.raises(ValueError, match="too large for reference='whole'"):
        iter_measure_seams(
            image, predictor, tile_size=32, reference="whole", max_whole_pixels=1000
        )
    assert shapes == []  # refused before any tile ran


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reference": "tiles"}, "reference must be one of 'shifted', 'whole', got 'tiles'"),
        ({"noise_sigma": 0.0}, "noise_sigma must be a positive number"),
        ({"noise_sigma": [1.0, float("nan")]}, "noise_sigma must be a positive number"),
        ({"noise_sigma": "1"}, "noise_sigma must be a positive number"),
        ({"max_whole_pixels": 0}, "max_whole_pixels must be a whole number of at least 1"),
        ({"tile_size": 30}, "tile_size must be a multiple of 16 and at least 32, got 30"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_seams(_noise_image((1, 40, 40)), lambda x: x, **{"tile_size": 32, **kwargs})


def test_noise_sigma_is_estimated_from_the_image_by_default(cnn):
    from napari_astrodenoise.core.noiselevel import noise_sigma

    image = _noise_image((1, 96, 96)) * 0.5
    report = measure_seams(image, cnn, tile_size=32, blend="none")
    assert report.noise_sigma == pytest.approx(float(noise_sigma(image)[0]))
    assert report.noise_sigma == pytest.approx(0.5, rel=0.15)
    explicit = measure_seams(
        image, cnn, tile_size=32, blend="none", noise_sigma=report.noise_sigma
    )
    assert explicit.seam_sigma == pytest.approx(report.seam_sigma)


def test_noiseless_image_asks_for_an_explicit_noise_sigma():
    with pytest.raises(ValueError, match="pass noise_sigma explicitly"):
        measure_seams(np.ones((1, 40, 40), np.float32), lambda x: x, tile_size=32)


@pytest.mark.parametrize(
    ("sigma", "start"),
    [
        (0.02, "invisible: 0.02 sigma, far below the noise"),
        (0.1, "hard to see"),
        (0.3, "may show"),
        (1.2, "visible: 1.2 sigma"),
    ],
)
def test_seam_verdict_says_whether_seams_show(sigma, start):
    from napari_astrodenoise.core.diagnostics import seam_verdict

    assert seam_verdict(sigma).startswith(start)
