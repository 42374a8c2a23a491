"""Artifact annotations to and from CSV and DS9 region files; no napari in here.

Coordinates: an annotation's position is napari's (row, col) in the image's data
coordinates, 0-based with pixel centres at integers, so (0, 0) is the centre of the first
array element. FITS and DS9 "image" coordinates are 1-based: ``x = col + 1``,
``y = row + 1``. Sky coordinates come from the image's WCS (astropy's ``pixel_to_world``
takes 0-based (x, y) = (col, row)). The reader leaves the array as stored in the file (it
flips only the display), so data rows are FITS rows minus one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CATEGORIES = (
    "hot pixel",
    "satellite trail",
    "tile seam",
    "ringing or halo",
    "invented structure",
    "other",
)
#: one colour per category, valid both in napari and in DS9
COLORS = dict(zip(CATEGORIES, ("red", "yellow", "cyan", "magenta", "green", "white"), strict=True))
CSV_SUFFIXES = (".csv",)
DS9_SUFFIXES = (".reg", ".ds9")


@dataclass
class Annotations:
    """Annotated points of one image.

    Attributes
    ----------
    positions : ndarray
        (n, 2) float64 (row, col), 0-based napari data coordinates.
    category : list of str
        One of `CATEGORIES` per point.
    note : list of str
        Free text per point.
    """

    positions: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    category: list[str] = field(default_factory=list)
    note: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 2)
        self.category = [checked_category(c) for c in self.category]
        self.note = ["" if n is None else str(n) for n in self.note]
        if not len(self.positions) == len(self.category) == len(self.note):
            msg = (
                f"{len(self.positions)} positions, {len(self.category)} categories and "
                f"{len(self.note)} notes: one of each per annotation"
            )
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.positions)


def checked_category(value: Any) -> str:
    """The category itself when known (any case), else ``"other"``."""
    text = str(value).strip().lower()
    return text if text in CATEGORIES else "other"


def celestial(wcs: Any) -> Any:
    """The celestial part of a WCS, or None when there is none (no sky coordinates)."""
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    return wcs.celestial


# ------------------------------------------------------------------------------ CSV


def to_table(annotations: Annotations, wcs: Any = None) -> Any:
    """A DataFrame: row, col (0-based), x_image, y_image (1-based), ra/dec, category, note."""
    import pandas as pd

    rows, cols = annotations.positions.T
    table = pd.DataFrame({"row": rows, "col": cols, "x_image": cols + 1, "y_image": rows + 1})
    sky = celestial(wcs)
    if sky is not None:
        coords = sky.pixel_to_world(cols, rows)
        table["ra_deg"] = np.atleast_1d(coords.icrs.ra.deg)
        table["dec_deg"] = np.atleast_1d(coords.icrs.dec.deg)
    table["category"] = annotations.category
    table["note"] = annotations.note
    return table


def write_csv(path: str | Path, annotations: Annotations, wcs: Any = None) -> Path:
    """Write annotations as CSV (see `to_table` for the columns)."""
    path = Path(path)
    to_table(annotations, wcs).to_csv(path, index=False)
    return path


def read_csv(path: str | Path, wcs: Any = None) -> Annotations:
    """Read annotations from CSV: (row, col), else (x_image, y_image), else (ra_deg, dec_deg).

    Raises
    ------
    ValueError
        When no position columns are found, or sky positions come without a WCS.
    """
    import pandas as pd

    table = pd.read_csv(path, keep_default_na=False)  # a note "NA" stays text
    positions = _csv_positions(table, wcs, Path(path).name)
    n = len(table)
    category = list(table["category"]) if "category" in table else ["other"] * n
    note = [str(x) for x in table["note"]] if "note" in table else [""] * n
    return Annotations(positions, category, note)


def _csv_positions(table: Any, wcs: Any, name: str) -> np.ndarray:
    columns = set(table.columns)
    if {"row", "col"} <= columns:
        return table[["row", "col"]].to_numpy(dtype=np.float64)
    if {"x_image", "y_image"} <= columns:
        return table[["y_image", "x_image"]].to_numpy(dtype=np.float64) - 1.0
    if {"ra_deg", "dec_deg"} <= columns:
        return _sky_to_rows_cols(table["ra_deg"], table["dec_deg"], wcs, name)
    msg = f"{name}: no position columns (row/col, x_image/y_image or ra_deg/dec_deg)"
    raise ValueError(msg)


def _sky_to_rows_cols(ra: Any, dec: Any, wcs: Any, name: str) -> np.ndarray:
    from astropy.coordinates import SkyCoord

    sky = celestial(wcs)
    if sky is None:
        msg = f"{name} holds sky positions, but the image has no WCS to place them"
        raise ValueError(msg)
    coords = SkyCoord(np.asarray(ra, float), np.asarray(dec, float), unit="deg", frame="icrs")
    x, y = sky.world_to_pixel(coords)
    return np.column_stack([np.atleast_1d(y), np.atleast_1d(x)]).astype(np.float64)


# ------------------------------------------------------------------------------ DS9


def _ds9_text(note: str) -> str:
    # DS9 delimits text with braces; regions cannot escape them
    return note.replace("{", "(").replace("}", ")")


def to_regions(annotations: Annotations, wcs: Any = None) -> Any:
    """``regions.Regions`` of points: sky points with a celestial WCS, image points otherwise."""
    from regions import (
        PixCoord,
        PointPixelRegion,
        PointSkyRegion,
        RegionMeta,
        Regions,
        RegionVisual,
    )

    sky = celestial(wcs)
    rows, cols = annotations.positions.T
    coords = sky.pixel_to_world(cols, rows) if sky is not None and len(rows) else None
    out = []
    for i, (category, note) in enumerate(zip(annotations.category, annotations.note, strict=True)):
        fields = {"text": _ds9_text(note), "tag": [category]} if note else {"tag": [category]}
        meta = RegionMeta(fields)
        visual = RegionVisual({"color": COLORS[category], "marker": "x"})
        if coords is not None:
            out.append(PointSkyRegion(coords[i], meta=meta, visual=visual))
        else:
            center = PixCoord(x=float(cols[i]), y=float(rows[i]))  # regions: 0-based pixels
            out.append(PointPixelRegion(center, meta=meta, visual=visual))
    return Regions(out)


def write_ds9(path: str | Path, annotations: Annotations, wcs: Any = None) -> Path:
    """Write a DS9 region file of points (``icrs`` with a WCS, else 1-based ``image``)."""
    path = Path(path)
    path.write_text(to_regions(annotations, wcs).serialize(format="ds9"))
    return path


def read_ds9(path: str | Path, wcs: Any = None) -> Annotations:
    """Read a DS9 region file: each region's centre, its first known tag and its text.

    Sky regions need ``wcs``; regions without a centre (polygons, lines) are skipped.
    """
    from regions import Regions, SkyRegion

    regions = Regions.read(str(path), format="ds9")
    sky = celestial(wcs)
    positions, category, note = [], [], []
    for region in regions:
        if isinstance(region, SkyRegion):
            if sky is None:
                msg = f"{Path(path).name} holds sky regions, but the image has no WCS"
                raise ValueError(msg)
            region = region.to_pixel(sky)
        center = getattr(region, "center", None)
        if center is None:
            continue
        positions.append((float(center.y), float(center.x)))
        tags = [str(t).strip().lower() for t in region.meta.get("tag", [])]
        category.append(next((t for t in tags if t in CATEGORIES), "other"))
        note.append(str(region.meta.get("text", "")))
    return Annotations(np.array(positions, dtype=np.float64).reshape(-1, 2), category, note)


# ------------------------------------------------------------------------------ by suffix


def _kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in DS9_SUFFIXES:
        return "ds9"
    msg = f"{Path(path).name}: use a .csv file or a DS9 region file (.reg, .ds9)"
    raise ValueError(msg)


def export_annotations(path: str | Path, annotations: Annotations, wcs: Any = None) -> Path:
    """Write CSV or DS9 regions, by the file's suffix."""
    writer = write_csv if _kind(path) == "csv" else write_ds9
    return writer(path, annotations, wcs)


def import_annotations(path: str | Path, wcs: Any = None) -> Annotations:
    """Read CSV or DS9 regions, by the file's suffix."""
    reader = read_csv if _kind(path) == "csv" else read_ds9
    return reader(path, wcs)
