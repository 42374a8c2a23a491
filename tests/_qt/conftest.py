"""Helpers of the widget tests: a small star field, docking from the manifest, waiting."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-astrodenoise"


def _star_field(shape=(96, 96), *, n_stars=5, seed=0, sky=100.0, noise=3.0) -> np.ndarray:
    """(H, W) float32 sky with Gaussian noise and ``n_stars`` well separated stars."""
    rng = np.random.default_rng(seed)
    h, w = shape
    image = sky + noise * rng.standard_normal(shape)
    yy, xx = np.mgrid[0:h, 0:w]
    cols = np.linspace(12, w - 12, n_stars)
    rows = np.linspace(12, h - 12, n_stars)[::-1] if n_stars > 1 else [h / 2]
    for r, c in zip(rows, cols, strict=True):
        image += 400.0 * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 1.5**2))
    return image.astype(np.float32)


def _flip(shape) -> dict:
    """The FITS reader's display transform: row 0 drawn at the bottom."""
    return {"scale": (-1.0, 1.0), "translate": (shape[0] - 1.0, 0.0)}


def _dock(viewer, name: str):
    """Dock a widget from the manifest by its display name; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _wait_idle(qtbot, widget, timeout: int = 10_000) -> None:
    """Wait until the widget's worker(s) are done."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


@pytest.fixture
def notifications(monkeypatch):
    """Error, warning and info notifications shown by the widgets, as (severity, message)."""
    from napari_astrodenoise._widgets import _common

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(_common, "show_error", lambda m: shown.append(("error", m)))
    monkeypatch.setattr(_common, "show_info", lambda m: shown.append(("info", m)))
    monkeypatch.setattr(_common, "show_warning", lambda m: shown.append(("warning", m)))
    return shown


@pytest.fixture
def viewer(make_napari_viewer):
    """A napari viewer, closed after the test."""
    return make_napari_viewer()


@pytest.fixture
def dock_with_model(dock, random_model_path):
    """``dock_with_model(viewer, display_name, tile_size)``: a widget docked from the manifest,
    its model picker set to the small random test model on the CPU."""
    from napari_astrodenoise._widgets._models import FROM_FILE

    def make(viewer, name: str, tile_size: int):
        w = dock(viewer, name)
        w.picker.model.value = FROM_FILE
        w.picker.model_file.value = random_model_path
        w.picker.device.value = "cpu"
        w.tile_size.value = tile_size
        return w

    return make


@pytest.fixture
def star_field():
    """``star_field(shape, n_stars=5, seed=0)``: a small noisy star field, (H, W) float32."""
    return _star_field


@pytest.fixture
def flip():
    """``flip(shape)``: the reader's y-flip as scale and translate keywords."""
    return _flip


@pytest.fixture
def dock():
    """``dock(viewer, display_name)``: the widget docked from the manifest."""
    return _dock


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget)``: wait until the widget's workers are done."""
    return lambda widget, timeout=10_000: _wait_idle(qtbot, widget, timeout)
