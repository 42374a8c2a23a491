"""Import boundaries: core loads no GUI, the reader loads no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

GUI = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def _engine_modules() -> list[str]:
    """Every module of core/ and simulate/, found on disk (a new module is covered at once)."""
    import pkgutil

    import napari_astrodenoise.core
    import napari_astrodenoise.simulate

    names = []
    for package in (napari_astrodenoise.core, napari_astrodenoise.simulate):
        prefix = package.__name__.removeprefix("napari_astrodenoise.")
        names += [f"{prefix}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    return sorted(names)


IO_MODULES = (
    "fits_io",
    "fits_write",
    "xisf_blocks",
    "xisf_io",
    "xisf_write",
    "tiff_io",
    "image_io",
)


@pytest.mark.parametrize("module", [*_engine_modules(), *IO_MODULES, "cli"])
def test_engine_modules_load_no_gui_toolkit(module):
    loaded = _loaded_after(f"import napari_astrodenoise.{module}")
    assert not loaded & set(GUI)


def test_public_api_is_importable_without_napari():
    loaded = _loaded_after(
        "from napari_astrodenoise import denoise, star_mask, seam_map, load_model"
    )
    assert not loaded & set(GUI)


def test_reading_fits_does_not_import_torch():
    loaded = _loaded_after("import napari_astrodenoise._reader, napari_astrodenoise.fits_io")
    assert "torch" not in loaded


def test_reading_and_writing_xisf_and_tiff_do_not_import_torch(tmp_path):
    script = (
        "import numpy as np; from napari_astrodenoise.image_io import read_image, write_image; "
        f"[read_image(write_image({str(tmp_path)!r} + '/a' + s, np.ones((4, 4), 'f4'))) "
        "for s in ('.xisf', '.tif')]"
    )
    loaded = _loaded_after(script)
    assert "torch" not in loaded and "tifffile" in loaded


def test_package_import_is_cheap():
    loaded = _loaded_after("import napari_astrodenoise")
    assert "torch" not in loaded and "napari" not in loaded


def test_all_names_resolve():
    import napari_astrodenoise as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None


def test_listing_models_does_not_import_torch():
    loaded = _loaded_after(
        "from napari_astrodenoise.core.weights import list_models; list_models()"
    )
    assert "torch" not in loaded
