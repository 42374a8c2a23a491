"""Opening and saving FITS through a real napari viewer: layers, rgb, metadata, flip, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise.fits_io import FitsReadError, read_fits

PLUGIN = "napari-astrodenoise"


def test_multi_extension_file_opens_one_layer_per_image_hdu(make_napari_viewer, crafted_fits):
    viewer = make_napari_viewer()
    layers = viewer.open(crafted_fits["mef"], plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["mef[SCI]", "mef[ERR]"]
    assert [layer.metadata["extname"] for layer in layers] == ["SCI", "ERR"]
    assert all(layer.metadata["fits_header"]["XTENSION"] == "IMAGE" for layer in layers)
    assert all(layer.source.reader_plugin == PLUGIN for layer in layers)


def test_fits_row_one_is_drawn_at_the_bottom_without_touching_the_array(
    make_napari_viewer, crafted_fits
):
    viewer = make_napari_viewer()
    path = crafted_fits["with_wcs"]
    [layer] = viewer.open(path, plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, fits.getdata(path))
    # napari's y axis points down: data row 0 (FITS row 1) lands on the last world row
    np.testing.assert_allclose(layer.data_to_world((0, 0)), (19, 0))
    np.testing.assert_allclose(layer.data_to_world((19, 29)), (0, 29))
    np.testing.assert_allclose(layer.world_to_data((19, 5)), (0, 5))  # pixel coords intact
    # the picture covers the same world area as the unflipped array would
    plain = viewer.add_image(np.zeros((20, 30), np.float32))
    np.testing.assert_allclose(layer.extent.world, plain.extent.world)
    assert layer.metadata["wcs"] is not None


def test_three_plane_cube_opens_as_one_colour_layer(make_napari_viewer, crafted_fits):
    viewer = make_napari_viewer()
    [layer] = viewer.open(crafted_fits["cube3"], plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (8, 10, 3)
    assert layer.metadata["fits_kind"] == "rgb"
    np.testing.assert_allclose(layer.data_to_world((0, 0)), (7, 0))
    assert viewer.dims.ndim == 2  # no slider for the colour axis


def test_five_plane_cube_opens_as_a_stack_with_a_slider(make_napari_viewer, crafted_fits):
    viewer = make_napari_viewer()
    [layer] = viewer.open(crafted_fits["cube5"], plugin=PLUGIN)
    assert not layer.rgb and layer.data.shape == (5, 8, 10)
    assert viewer.dims.ndim == 3 and viewer.dims.nsteps[0] == 5
    np.testing.assert_allclose(layer.data_to_world((2, 0, 0)), (2, 7, 0))


def test_files_opened_with_stack_become_one_layer_with_a_slider(make_napari_viewer, tmp_path):
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"light_{i:03d}.fits"))
        fits.PrimaryHDU(np.full((8, 10), i, np.float32)).writeto(paths[-1])
    viewer = make_napari_viewer()
    [layer] = viewer.open(paths, stack=True, plugin=PLUGIN)
    assert layer.data.shape == (4, 8, 10) and viewer.dims.nsteps[0] == 4
    assert layer.metadata["stack_paths"] == paths
    np.testing.assert_allclose(layer.data_to_world((3, 0, 0)), (3, 7, 0))
    viewer.layers.clear()
    assert len(viewer.open(paths, stack=False, plugin=PLUGIN)) == 4  # one layer per file


def test_real_bayer_frame_opens_as_mono_with_pattern_and_wcs(make_napari_viewer, shared_fits_dir):
    viewer = make_napari_viewer()
    path = shared_fits_dir / "eval" / "ngc7023_seestar_raw_bayer_10s.fits"
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.name == "ngc7023_seestar_raw_bayer_10s"
    assert not layer.rgb and layer.data.shape == (1920, 1080)
    assert layer.metadata["bayer_pattern"] == "GRBG"
    assert layer.metadata["wcs"].has_celestial
    low, high = layer.contrast_limits
    assert np.isfinite([low, high]).all() and low < high


def test_tile_compressed_m13_opens(make_napari_viewer, m13_dir):
    viewer = make_napari_viewer()
    [layer] = viewer.open(m13_dir / "m13_rice.fits", plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, fits.getdata(m13_dir / "m13.fits"))


def test_broken_file_raises_a_clear_error_and_the_viewer_carries_on(
    make_napari_viewer, crafted_fits, broken_fits
):
    viewer = make_napari_viewer()
    with pytest.raises(FitsReadError, match=broken_fits.name):
        viewer.open(broken_fits, plugin=PLUGIN)
    assert len(viewer.layers) == 0
    viewer.open(crafted_fits["nonfinite"], plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["nonfinite"]


def test_preferred_reader_wraps_our_message_in_napari_reader_error(
    make_napari_viewer, crafted_fits
):
    """napari also lists its builtin reader for *.fits: the preference picks ours."""
    from napari.errors import ReaderPluginError
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    get_settings().plugins.extension2reader = {"*.fits": PLUGIN}
    with pytest.raises(ReaderPluginError, match="no 2-D or 3-D image") as info:
        viewer.open(crafted_fits["table_only"], plugin=None)  # None: as File > Open does
    assert isinstance(info.value.original_error, FitsReadError)
    [layer] = viewer.open(crafted_fits["cube5"], plugin=None)
    assert layer.source.reader_plugin == PLUGIN


def test_gui_open_of_a_broken_file_becomes_an_error_notification(
    make_napari_viewer, crafted_fits, qtbot, monkeypatch
):
    """An error leaving a Qt slot reaches napari's hook: a notification, not a crash."""
    from napari.settings import get_settings
    from napari.utils.notifications import NotificationSeverity, notification_manager
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    monkeypatch.setattr(notification_manager, "catch_error", True)
    monkeypatch.setattr(
        get_settings().application, "gui_notification_level", NotificationSeverity.NONE
    )
    messages: list[tuple[object, str]] = []

    def keep(note):
        messages.append((note.severity, note.message))

    notification_manager.notification_ready.connect(keep)
    path = str(crafted_fits["garbage"])
    qt_viewer = viewer.window._qt_viewer
    try:
        with notification_manager:  # the hooks napari installs in the GUI
            QTimer.singleShot(0, lambda: qt_viewer._qt_open([path], stack=False, plugin=PLUGIN))
            qtbot.waitUntil(lambda: bool(messages), timeout=3000)
    finally:
        notification_manager.notification_ready.disconnect(keep)
        notification_manager.records.clear()
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):  # set by the hook; its frames would keep the viewer alive
                delattr(sys, name)
    [(severity, message)] = messages
    assert severity == NotificationSeverity.ERROR
    assert "garbage.fits" in message and "not a valid FITS file" in message
    viewer.open(crafted_fits["cube3"], plugin=PLUGIN)  # still alive
    assert len(viewer.layers) == 1


def test_gui_open_with_the_preference_shows_our_reason_in_napari_reader_dialog(
    make_napari_viewer, crafted_fits, monkeypatch
):
    """File > Open: napari offers its other readers in a dialog that quotes our error."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.settings import get_settings
    from qtpy.QtWidgets import QLabel

    viewer = make_napari_viewer()
    get_settings().plugins.extension2reader = {"*.fits": PLUGIN}
    shown: list[str] = []

    def user_cancels(dialog):
        shown.append("\n".join(label.text() for label in dialog.findChildren(QLabel)))
        return "", False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", user_cancels)
    viewer.window._qt_viewer._qt_open([str(crafted_fits["one_d"])], stack=False)
    [text] = shown
    assert "one_d.fits" in text and "1-D image" in text
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("key", ["nonfinite", "cube3", "cube5", "scaled_int16"])
def test_saving_a_layer_through_napari_round_trips(
    make_napari_viewer, crafted_fits, tmp_path, key
):
    viewer = make_napari_viewer()
    [layer] = viewer.open(crafted_fits[key], plugin=PLUGIN)
    out = tmp_path / "saved.fits"
    written = layer.save(str(out), plugin=PLUGIN)
    assert written == [str(out)]
    [source] = read_fits(crafted_fits[key])
    [back] = read_fits(out)
    assert back.data.shape == source.data.shape and back.kind == source.kind
    np.testing.assert_array_equal(back.data.view(np.uint32), source.data.view(np.uint32))
    assert back.header["HISTORY"][-1] == f"saved from napari layer '{layer.name}'"


def test_xisf_and_tiff_of_one_sky_open_the_same_way_up(make_napari_viewer, tmp_path):
    import tifffile

    from napari_astrodenoise.xisf_write import write_xisf

    bottom_up = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)  # FITS order
    fits.PrimaryHDU(bottom_up).writeto(tmp_path / "sky.fits")
    write_xisf(tmp_path / "sky.xisf", bottom_up)
    tifffile.imwrite(tmp_path / "sky.tif", bottom_up[::-1])  # TIFF: top row first
    viewer = make_napari_viewer()
    layers = [
        viewer.open(tmp_path / n, plugin=PLUGIN)[0] for n in ("sky.fits", "sky.xisf", "sky.tif")
    ]
    for layer in layers:
        np.testing.assert_array_equal(layer.data, bottom_up)
        np.testing.assert_allclose(layer.data_to_world((0, 0)), (5, 0))


@pytest.mark.parametrize("suffix", [".xisf", ".tif"])
def test_saving_through_napari_offers_xisf_and_tiff(
    make_napari_viewer, crafted_fits, tmp_path, suffix
):
    from napari_astrodenoise.image_io import read_image

    viewer = make_napari_viewer()
    [layer] = viewer.open(crafted_fits["cube3"], plugin=PLUGIN)
    out = tmp_path / f"saved{suffix}"
    assert layer.save(str(out), plugin=PLUGIN) == [str(out)]
    [back] = read_image(out)
    assert back.file_format == ("xisf" if suffix == ".xisf" else "tiff") and back.kind == "rgb"
    np.testing.assert_array_equal(back.data, read_fits(crafted_fits["cube3"])[0].data)


def test_large_file_opens_as_a_lazy_multiscale_layer(make_napari_viewer, tmp_path, monkeypatch):
    import dask.array as da

    import napari_astrodenoise._reader as reader

    monkeypatch.setattr(reader, "LAZY_READ_BYTES", 1 << 20)
    monkeypatch.setattr(reader, "PYRAMID_SIDE", 256)
    path = tmp_path / "mosaic.fits"
    data = np.random.default_rng(3).normal(size=(1100, 900)).astype(np.float32)
    fits.PrimaryHDU(data).writeto(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.multiscale
    assert all(isinstance(level, da.Array) for level in layer.data)
    assert layer.data[0].shape == (1100, 900)
    np.testing.assert_array_equal(np.asarray(layer.data[2][100:110]), data[::4, ::4][100:110])


def test_a_lazy_mosaic_layer_is_refused_by_the_panels_with_the_way_out(
    make_napari_viewer, tmp_path, monkeypatch
):
    import napari_astrodenoise._reader as reader
    from napari_astrodenoise._widgets._common import channel_axis

    monkeypatch.setattr(reader, "LAZY_READ_BYTES", 1 << 20)
    monkeypatch.setattr(reader, "PYRAMID_SIDE", 256)
    path = tmp_path / "mosaic.fits"
    fits.PrimaryHDU(np.zeros((1100, 900), np.float32)).writeto(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    with pytest.raises(ValueError, match="astrodenoise denoise FILE --memory"):
        channel_axis(layer)
