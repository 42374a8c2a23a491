"""What a user sees on opening a linear FITS file: the sky lifted off black, the data kept."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from napari_astrodenoise._widgets._common import Panel

PLUGIN = "napari-astrodenoise"


def _linear_frame(path, shape=(200, 200)):
    """A linear frame as a camera gives it: a sky of 1000 with noise 10, and bright stars."""
    rng = np.random.default_rng(3)
    data = 1000 + 10 * rng.standard_normal(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for r, c in rng.uniform(20, shape[0] - 20, (12, 2)):
        data += 60000 * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 2.0**2))
    fits.writeto(path, data.astype(np.float32))
    return data.astype(np.float32)


def test_an_opened_linear_frame_shows_a_grey_sky_not_black(make_napari_viewer, qtbot, tmp_path):
    data = _linear_frame(tmp_path / "linear.fits")
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(tmp_path / "linear.fits", plugin=PLUGIN)
    viewer.reset_view()
    qtbot.wait(100)
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    h, w = shot.shape[:2]
    centre = shot[h // 2 - h // 8 : h // 2 + h // 8, w // 2 - w // 8 : w // 2 + w // 8]
    sky = np.median(centre)  # stars are few: the median pixel of the picture is sky
    assert sky > 25, sky  # a 0.5-99.8 % linear display draws this sky below 1 of 255
    assert shot.max() > 200  # and the stars are still bright
    np.testing.assert_array_equal(layer.data, data)  # the display changed, not the data


def test_panel_rows_keep_their_height_in_a_tall_dock(qtbot):
    from magicgui.widgets import PushButton

    panel = Panel()
    button = panel.add(PushButton(text="Run"))
    qtbot.addWidget(panel.native)
    panel.native.resize(300, 900)
    panel.native.show()
    qtbot.wait(50)
    assert button.native.height() <= 2 * button.native.sizeHint().height()
    assert button.native.y() < 100  # at the top, the space left below it
