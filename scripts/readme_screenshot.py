"""Make docs/images/widgets.png: napari with the Denoise and FITS header widgets after a run.

Opens the bundled real M13 sample, docks *Denoise* and *FITS header and sky position*, runs
the shipped default model, puts the cursor on the cluster (so the sky position shows) and
saves napari's screenshot of the whole window. Needs a display; on a server, Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/readme_screenshot.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-astrodenoise"
SIZE = (1500, 900)  # window width, height in px


def make(out: Path) -> None:
    """Run the plugin on the M13 sample in a napari window; save the window to ``out``."""
    import imageio.v3 as iio
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*SIZE)
    viewer.open_sample(PLUGIN, "m13")
    dock1, denoise = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    dock2, header = viewer.window.add_plugin_dock_widget(PLUGIN, "FITS header and sky position")
    denoise.picker.device.value = "cpu"
    denoise.run()
    _wait(lambda: not denoise.busy, QApplication)
    header.image.value = viewer.layers[0]
    viewer.cursor.position = (150.0, 150.0)
    window = viewer.window._qt_window
    window.resizeDocks([dock1, dock2], [330, 470], Qt.Orientation.Vertical)
    window.resizeDocks([dock1], [460], Qt.Orientation.Horizontal)
    _wait(lambda: False, QApplication, seconds=1.0)  # let the window lay itself out
    viewer.reset_view()
    _wait(lambda: False, QApplication, seconds=0.5)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, shot)
    print(f"{[layer.name for layer in viewer.layers]}; {header.position.value} -> {out}")
    viewer.close()


def _wait(done, app, *, seconds: float = 120.0) -> None:
    """Process Qt events until ``done()`` or ``seconds`` have passed."""
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs/images/widgets.png", help="PNG to write"
    )
    make(parser.parse_args().out)


if __name__ == "__main__":
    main()
