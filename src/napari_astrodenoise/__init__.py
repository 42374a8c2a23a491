"""Faithful denoising of linear astronomical images, as a napari plugin and a Python API.

Importing this package is cheap: torch, napari and Qt load only when a name that needs
them is first used (the FITS reader must open files without importing torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "denoise": "napari_astrodenoise.core.pipeline",
    "iter_denoise": "napari_astrodenoise.core.pipeline",
    "iter_seam_map": "napari_astrodenoise.core.pipeline",
    "DenoiseResult": "napari_astrodenoise.core.pipeline",
    "FileJob": "napari_astrodenoise.batch",
    "denoise_files": "napari_astrodenoise.batch",
    "seam_map": "napari_astrodenoise.core.pipeline",
    "star_mask": "napari_astrodenoise.core.starmask",
    "finetune": "napari_astrodenoise.finetune",
    "iter_finetune": "napari_astrodenoise.finetune",
    "load_model": "napari_astrodenoise.core.weights",
    "list_models": "napari_astrodenoise.core.weights",
    "read_fits": "napari_astrodenoise.fits_io",
    "write_fits": "napari_astrodenoise.fits_io",
    "read_image": "napari_astrodenoise.image_io",
    "write_image": "napari_astrodenoise.image_io",
}

__all__ = [
    "DenoiseResult",
    "FileJob",
    "__version__",
    "denoise",
    "denoise_files",
    "finetune",
    "iter_denoise",
    "iter_finetune",
    "iter_seam_map",
    "list_models",
    "load_model",
    "read_fits",
    "read_image",
    "seam_map",
    "star_mask",
    "write_fits",
    "write_image",
]

if TYPE_CHECKING:  # pragma: no cover
    from napari_astrodenoise.batch import FileJob, denoise_files
    from napari_astrodenoise.core.pipeline import (
        DenoiseResult,
        denoise,
        iter_denoise,
        iter_seam_map,
        seam_map,
    )
    from napari_astrodenoise.core.starmask import star_mask
    from napari_astrodenoise.core.weights import list_models, load_model
    from napari_astrodenoise.finetune import finetune, iter_finetune
    from napari_astrodenoise.fits_io import read_fits, write_fits
    from napari_astrodenoise.image_io import read_image, write_image


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        msg = f"module 'napari_astrodenoise' has no attribute {name!r}"
        raise AttributeError(msg) from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
