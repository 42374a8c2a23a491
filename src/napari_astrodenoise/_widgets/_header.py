"""The FITS header widget: an image's header as text, and RA/Dec under the cursor."""

from __future__ import annotations

from typing import Any

import napari
import napari.viewer
import numpy as np
from magicgui.widgets import Label, TextEdit

from napari_astrodenoise._widgets._common import Panel, unwrap

NO_WCS = "no sky coordinates: this image has no celestial WCS"


def sky_position(layer: Any, world: Any) -> str | None:
    """RA and Dec of a world position over ``layer``, or None off the image or without a WCS.

    Parameters
    ----------
    layer : napari Image layer
        With ``metadata["wcs"]`` (an astropy WCS, as the FITS reader stores it).
    world : sequence of float
        A position in the viewer's world coordinates (``viewer.cursor.position``).

    Returns
    -------
    str or None
        ``"RA 16h41m41.2s  Dec +36d27m37s  (x 150, y 149)"``: FITS pixel numbers from 1.
    """
    wcs = _celestial(layer)
    if wcs is None:
        return None
    data = np.asarray(layer.world_to_data(world), dtype=float)
    row, col = data[-2:]
    h, w = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
    if not (-0.5 <= row < h - 0.5 and -0.5 <= col < w - 0.5):
        return None
    sky = wcs.pixel_to_world(col, row).icrs
    ra = sky.ra.to_string(unit="hourangle", sep="hms", precision=1, pad=True)
    dec = sky.dec.to_string(unit="deg", sep="dms", precision=0, pad=True, alwayssign=True)
    return f"RA {ra}  Dec {dec}  (x {round(col) + 1}, y {round(row) + 1})"


def _celestial(layer: Any) -> Any:
    wcs = getattr(layer, "metadata", {}).get("wcs")
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    return wcs.celestial


def header_text(layer: Any) -> str:
    """The layer's FITS header, one card a line, or a line saying it has none."""
    header = None if layer is None else layer.metadata.get("fits_header")
    if header is None:
        return "no FITS header: this layer was not read from a FITS file"
    cards = header.tostring(sep="\n", endcard=False, padding=False).splitlines()
    return "\n".join(card.rstrip() for card in cards)


def _as_cards(text_edit: Any) -> None:
    """Read only, fixed-width and unwrapped: one 80-column card a line, as FITS keeps them."""
    from qtpy.QtGui import QFontDatabase
    from qtpy.QtWidgets import QTextEdit

    text_edit.setReadOnly(True)
    text_edit.setLineWrapMode(QTextEdit.LineWrapMode.NoWrap)
    text_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))


class HeaderWidget(Panel):
    """The chosen image's FITS header, and the sky position (RA/Dec) under the cursor.

    The sky position follows the mouse over the canvas for an image with a celestial WCS
    (read by the FITS reader into ``metadata["wcs"]``).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.image.tooltip = "The image whose header and sky coordinates are shown"
        self.position = self.add(Label(label="Cursor", value=""))
        self.position.tooltip = "Right ascension and declination under the mouse (ICRS)"
        self.header = self.add(TextEdit(label="Header", value=""))
        self.header.tooltip = "The FITS header the image was read with (read only)"
        _as_cards(self.header.native)
        self.image.changed.connect(self._show_header)
        viewer.cursor.events.position.connect(self._cursor_moved)
        self._show_header()

    def _show_header(self, *_: Any) -> None:
        layer = unwrap(self.image.value)
        self.header.value = header_text(layer)
        self.position.value = "" if layer is None or _celestial(layer) else NO_WCS

    def _cursor_moved(self, *_: Any) -> None:
        layer = unwrap(self.image.value)
        if layer is None or _celestial(layer) is None:
            return
        found = sky_position(layer, self._viewer.cursor.position)
        self.position.value = found or "off the image"
