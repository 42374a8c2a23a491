"""napari reader glue: which paths it takes, the layer tuples it builds, no torch needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise._reader import (
    display_transform,
    napari_get_reader,
    read_fits_layers,
)
from napari_astrodenoise.fits_io import FitsReadError

METADATA_KEYS = {
    "fits_header",
    "wcs",
    "source_path",
    "hdu_index",
    "extname",
    "bayer_pattern",
    "fits_kind",
    "file_format",
    "format_info",
}
SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz", ".fits.fz")


def _world(kwargs: dict, index: tuple[float, ...]) -> tuple[float, ...]:
    """Where napari draws data index ``index`` given the layer's scale and translate."""
    return tuple(
        i * s + t for i, s, t in zip(index, kwargs["scale"], kwargs["translate"], strict=True)
    )


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".FITS", ".Fit.GZ"])
def test_reader_is_offered_for_every_fits_suffix_in_any_case(suffix):
    assert napari_get_reader(f"/data/frame{suffix}") is read_fits_layers
    assert napari_get_reader(Path(f"frame{suffix}")) is read_fits_layers


@pytest.mark.parametrize(
    "path",
    ["image.png", "table.csv", "fits", "a.fits.bz2", "", None, 42, b"a.fits", [],
     ["a.fits", "b.txt"], ["a.fits", None], {"a.fits": 1}, object()],
    ids=repr,
)  # fmt: skip
def test_reader_declines_other_paths_without_raising(path):
    assert napari_get_reader(path) is None


def test_reader_declines_a_folder_named_like_fits(tmp_path):
    folder = tmp_path / "looks.fits"
    folder.mkdir()
    assert napari_get_reader(str(folder)) is None


def test_files_that_cannot_stack_say_why_and_open_one_by_one(crafted_fits):
    paths = [str(crafted_fits["mef"]), str(crafted_fits["nonfinite"])]
    reader = napari_get_reader(paths)
    assert reader is read_fits_layers
    with pytest.warns(UserWarning, match="mef.fits holds 2 images"):
        layers = reader(paths)
    assert [kw["name"] for _, kw, _ in layers] == ["mef[SCI]", "mef[ERR]", "nonfinite"]
    shapes = [str(crafted_fits["nonfinite"]), str(crafted_fits["float64"])]
    with pytest.warns(UserWarning, match="shape"):
        assert len(read_fits_layers(shapes)) == 2


@pytest.mark.parametrize("colour", [False, True], ids=["mono", "rgb"])
def test_files_of_one_shape_stack_into_one_layer_with_a_slider(tmp_path, colour):
    shape = (3, 6, 8) if colour else (6, 8)
    paths = []
    for i in range(3):
        header = fits.Header({"EXPTIME": 10.0 + i})
        paths.append(str(tmp_path / f"sub_{i}.fits"))
        fits.PrimaryHDU(np.full(shape, i, np.float32), header=header).writeto(paths[-1])
    [(data, kwargs, _)] = napari_get_reader(paths)(paths)
    assert data.shape == ((3, 6, 8, 3) if colour else (3, 6, 8))
    assert [float(plane.mean()) for plane in data] == [0.0, 1.0, 2.0]  # slider order
    assert kwargs["rgb"] is colour and kwargs["name"] == "sub_0 (3 files)"
    assert kwargs["scale"] == (1.0, -1.0, 1.0) and kwargs["translate"] == (0.0, 5.0, 0.0)
    meta = kwargs["metadata"]
    assert meta["stack_paths"] == paths
    assert [h["EXPTIME"] for h in meta["stack_headers"]] == [10.0, 11.0, 12.0]


def test_mono_layer_keeps_the_array_and_flips_with_the_transform(crafted_fits):
    path = crafted_fits["with_wcs"]
    [(data, kwargs, layer_type)] = read_fits_layers(str(path))
    assert layer_type == "image"
    np.testing.assert_array_equal(data, fits.getdata(path))  # not flipped
    assert kwargs["rgb"] is False
    assert (kwargs["scale"], kwargs["translate"]) == ((-1.0, 1.0), (19.0, 0.0))
    assert _world(kwargs, (0, 0)) == (19.0, 0.0)  # FITS row 1 drawn at the bottom
    assert _world(kwargs, (19, 29)) == (0.0, 29.0)
    assert set(kwargs["metadata"]) == METADATA_KEYS
    assert kwargs["metadata"]["wcs"] is not None
    assert kwargs["metadata"]["source_path"] == str(path)


def test_three_plane_cube_is_one_rgb_layer_made_of_a_view(crafted_fits):
    path = crafted_fits["cube3"]
    [(data, kwargs, _)] = read_fits_layers(str(path))
    planes = fits.getdata(path)
    assert data.shape == (8, 10, 3) and kwargs["rgb"] is True
    assert data.base is not None and not data.flags.c_contiguous  # moveaxis view, no copy
    for k in range(3):
        np.testing.assert_array_equal(data[..., k], planes[k])
    assert (kwargs["scale"], kwargs["translate"]) == ((-1.0, 1.0), (7.0, 0.0))
    assert kwargs["metadata"]["fits_kind"] == "rgb"


def test_five_plane_cube_is_a_stack_flipped_in_y_only(crafted_fits):
    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["cube5"]))
    assert data.shape == (5, 8, 10) and kwargs["rgb"] is False
    assert (kwargs["scale"], kwargs["translate"]) == ((1.0, -1.0, 1.0), (0.0, 7.0, 0.0))
    assert kwargs["metadata"]["fits_kind"] == "stack"


def test_contrast_limits_are_finite_despite_nan_and_inf(crafted_fits):
    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["nonfinite"]))
    low, high = kwargs["contrast_limits"]
    finite = data[np.isfinite(data)]
    assert np.isfinite([low, high]).all()
    assert finite.min() <= low < high <= finite.max()


def test_layers_open_with_the_astro_stretch_and_the_data_untouched(crafted_fits):
    from napari_astrodenoise.fits_io import read_fits

    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["cube3"]))
    assert kwargs["gamma"] != 1.0 and len(kwargs["contrast_limits"]) == 2
    planes = read_fits(crafted_fits["cube3"])[0].data
    np.testing.assert_array_equal(np.moveaxis(data, -1, 0), planes)


def test_the_stretch_setting_off_gives_percentile_limits_and_gamma_1(crafted_fits):
    from napari_astrodenoise.settings import auto_stretch, set_auto_stretch

    assert auto_stretch()
    set_auto_stretch(False)
    [(_, kwargs, _)] = read_fits_layers(str(crafted_fits["float64"]))
    assert kwargs["gamma"] == 1.0
    assert not auto_stretch()


def test_bayer_layer_names_its_pattern(crafted_fits):
    [(data, kwargs, _)] = read_fits_layers(str(crafted_fits["bayer"]))
    assert data.ndim == 2 and kwargs["rgb"] is False
    assert kwargs["metadata"]["bayer_pattern"] == "RGGB"


def test_reader_function_raises_fits_read_error_for_broken_files(broken_fits):
    reader = napari_get_reader(str(broken_fits))
    assert reader is not None  # the name is taken: the content is refused, clearly
    with pytest.raises(FitsReadError, match=broken_fits.name):
        reader(str(broken_fits))


def test_display_transform_needs_two_spatial_axes():
    assert display_transform((4, 6, 3), rgb=True) == {
        "scale": (-1.0, 1.0),
        "translate": (3.0, 0.0),
    }
    with pytest.raises(ValueError, match="2 spatial axes"):
        display_transform((6, 3), rgb=True)


def test_manifest_routes_fits_files_to_this_reader(crafted_fits):
    from npe2 import PluginManager, io_utils

    manager = PluginManager.instance()
    manager.discover()
    for name in ("x.fits", "x.FIT", "x.fts.gz", "x.fits.fz", "x.fz"):
        plugins = [r.plugin_name for r in manager.iter_compatible_readers([name])]
        assert "napari-astrodenoise" in plugins, name
    layers = io_utils.read(
        [str(crafted_fits["tiled"])], stack=False, plugin_name="napari-astrodenoise"
    )
    assert [kw["name"] for _, kw, _ in layers] == ["tiled"]


def test_reader_and_writer_import_neither_torch_nor_napari(crafted_fits):
    code = (
        "import sys\n"
        "from napari_astrodenoise._reader import napari_get_reader\n"
        "import napari_astrodenoise._writer\n"
        f"layers = napari_get_reader({str(crafted_fits['cube3'])!r})"
        f"({str(crafted_fits['cube3'])!r})\n"
        "assert len(layers) == 1\n"
        "heavy = sorted(m for m in ('torch', 'napari', 'qtpy', 'PyQt5') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- XISF and TIFF


def _same_sky(tmp_path: Path) -> tuple[np.ndarray, dict[str, Path]]:
    """One picture (top row first) saved as FITS, XISF (xisf package) and TIFF (tifffile)."""
    import tifffile
    import xisf

    top_down = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    paths = {
        "fits": tmp_path / "sky.fits",
        "xisf": tmp_path / "sky.xisf",
        "tiff": tmp_path / "sky.tif",
    }
    fits.PrimaryHDU(top_down[::-1]).writeto(paths["fits"])  # FITS: bottom row first
    xisf.XISF.write(str(paths["xisf"]), top_down[:, :, None])
    tifffile.imwrite(paths["tiff"], top_down)
    return top_down, paths


def test_the_same_sky_is_shown_the_same_way_up_from_every_format(tmp_path):
    pytest.importorskip("xisf")
    top_down, paths = _same_sky(tmp_path)
    layers = {name: read_fits_layers(str(path)) for name, path in paths.items()}
    for name, [(data, kwargs, _)] in layers.items():
        np.testing.assert_array_equal(data, top_down[::-1], err_msg=name)
        assert _world(kwargs, (0, 0)) == (5.0, 0.0), name  # data row 0 drawn at the bottom
        assert kwargs["metadata"]["file_format"] == name
        assert set(kwargs["metadata"]) == METADATA_KEYS


@pytest.mark.parametrize("name", ["sky.xisf", "SKY.XISF", "sky.tif", "sky.TIFF"])
def test_reader_is_offered_for_xisf_and_astro_tiff(tmp_path, name):
    import tifffile

    path = tmp_path / name
    if name.lower().endswith("xisf"):
        path.write_bytes(b"XISF0100")
    else:
        tifffile.imwrite(path, np.zeros((4, 4), np.uint16))
    assert napari_get_reader(str(path)) is read_fits_layers


def test_reader_leaves_picture_tiffs_to_napari(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 cut")
    assert napari_get_reader(str(tmp_path / "photo.tif")) is None
    assert napari_get_reader(str(tmp_path / "broken.tif")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None
