"""The flux lock measured on a fine-tuned model's own frames (finetune.lockcheck)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _synth import SKY, star_field
from scipy import ndimage

from napari_astrodenoise.core import pipeline
from napari_astrodenoise.finetune import lockcheck
from napari_astrodenoise.finetune.lockcheck import check_flux_lock, flux_change, held_out_sky

SIGMA = 10.0
SHAPE = (384, 384)
SPLIT = 256


@pytest.fixture(scope="module")
def scene():
    """(truth, frame 1, frame 2): a star field, two exposures with independent noise."""
    truth, _faint = star_field(SHAPE, seed=3, n_bright=80, sky=SKY)
    rng = np.random.default_rng(0)
    one = (truth + rng.normal(0, SIGMA, SHAPE)).astype(np.float32)
    two = (truth + rng.normal(0, SIGMA, SHAPE)).astype(np.float32)
    return truth.astype(np.float32), one, two


def _lowpass_noise(frame: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """What a lock hands back: the truth plus the frame's noise beyond 4 px."""
    return truth + ndimage.gaussian_filter(frame - truth, 4.0)


def test_held_out_sky_sees_the_noise_a_lock_hands_back(scene):
    truth, one, two = scene
    gradient = np.linspace(-30, 30, SHAPE[1], dtype=np.float32)[None, :]
    target = (two + gradient)[None]  # the sky changed between the exposures
    clean = truth[None]
    handed_back = _lowpass_noise(one, truth)[None]
    sky = held_out_sky(handed_back, clean, one[None], target, SPLIT)
    assert sky["pixels"] > 0.3 * (SHAPE[0] - SPLIT) * SHAPE[1]
    # with the lock: the noise beyond 4 px, 1 / (4 pi 16) of the variance, on top
    assert sky["difference"] == pytest.approx(1 / (4 * np.pi * 16), rel=0.5)
    assert sky["difference"] > 2 * sky["error"]
    # the same output both ways: no difference
    same = held_out_sky(clean, clean, one[None], target, SPLIT)
    assert same["difference"] == 0 and same["with_lock"] == same["without_lock"]


def test_flux_change_is_measured_on_every_star_and_paired(scene):
    truth, one, _two = scene
    kept = flux_change(truth[None], truth[None], one[None], radius=4.0)
    assert kept["stars"] >= 2 * lockcheck.MIN_STARS and kept["median"] == 0 and kept["error"] == 0
    dimmer = SKY + 0.95 * (truth - SKY)  # every star 5 % fainter without the lock
    lost = flux_change(truth[None], dimmer[None], one[None], radius=4.0)
    assert lost["median"] == pytest.approx(-0.05, abs=0.01)
    assert lost["error"] < 0.01


def _fake_denoise(without_lock):
    """pipeline.denoise stand-in: the truth with the lock, ``without_lock`` without it."""

    def denoise(raw, *, model, bayer, flux_lock):
        assert not bayer and flux_lock in (0.0, 8.0)
        return without_lock if flux_lock == 0 else model.with_lock

    return denoise


def _check(monkeypatch, scene, without_lock, with_lock=None):
    truth, one, two = scene
    model = SimpleNamespace(
        with_lock=_lowpass_noise(one, truth) if with_lock is None else with_lock
    )
    monkeypatch.setattr(pipeline, "denoise", _fake_denoise(without_lock))
    registration = SimpleNamespace(cell=1, crop=lambda k, data: data)
    frames = [SimpleNamespace(data=one), SimpleNamespace(data=two)]
    return check_flux_lock(model, frames, registration, [two[None]], SPLIT)


def test_the_lock_goes_off_only_when_the_sky_gains_and_the_stars_keep_their_flux(
    monkeypatch, scene
):
    truth, _one, _two = scene
    record = _check(monkeypatch, scene, without_lock=truth)
    assert record["flux_lock"] == 0.0 and record["tested_px"] == 8.0
    assert record["held_out_faint_sky"]["difference"] > 0
    assert record["star_flux_change_without_lock"]["median"] == pytest.approx(0, abs=0.002)
    assert "rule" in record


def test_the_lock_stays_when_stars_lose_flux_without_it(monkeypatch, scene):
    truth, _one, _two = scene
    dimmer = SKY + 0.95 * (truth - SKY)
    record = _check(monkeypatch, scene, without_lock=dimmer)
    assert record["flux_lock"] == 8.0
    assert record["star_flux_change_without_lock"]["median"] < -lockcheck.FLUX_TOLERANCE


def test_the_lock_stays_when_the_sky_is_better_with_it(monkeypatch, scene):
    truth, one, _two = scene
    record = _check(monkeypatch, scene, without_lock=one, with_lock=truth)
    assert record["flux_lock"] == 8.0
    assert record["held_out_faint_sky"]["difference"] < 0


def test_too_few_stars_keep_the_lock(monkeypatch):
    flat = np.full(SHAPE, SKY, np.float32)
    rng = np.random.default_rng(5)
    one, two = (flat + rng.normal(0, SIGMA, (2, *SHAPE))).astype(np.float32)
    model = SimpleNamespace(with_lock=_lowpass_noise(one, flat))
    monkeypatch.setattr(pipeline, "denoise", _fake_denoise(flat))
    registration = SimpleNamespace(cell=1, crop=lambda k, data: data)
    frames = [SimpleNamespace(data=one), SimpleNamespace(data=two)]
    record = check_flux_lock(model, frames, registration, [two[None]], SPLIT)
    assert record["held_out_faint_sky"]["difference"] > 0  # the sky alone would say off
    assert record["star_flux_change_without_lock"]["stars"] < lockcheck.MIN_STARS
    assert record["flux_lock"] == 8.0
