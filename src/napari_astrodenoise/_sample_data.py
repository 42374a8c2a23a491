"""Sample data for napari's File > Open Sample and for the CLI: all bundled, no downloads.

- ``m13``: astropy's bundled real 300x300 int16 frame of the globular cluster M13 (BSD, ships
  inside astropy), read through the same FITS reader as any file.
- ``synthetic``: a simulated colour deep-sky scene (Moffat/Gaussian stars with a power-law flux
  distribution, nebulosity, a galaxy, a gradient) with Poisson-Gaussian noise, together with
  its clean version, so that a denoiser's output can be compared with the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from napari_astrodenoise.fits_io import FitsImage, read_fits

SYNTHETIC_SHAPE = (512, 512)
SYNTHETIC_SEED = 2024
SYNTHETIC_GAIN = 1.5  # e-/ADU
SYNTHETIC_READ_NOISE = 6.0  # e-


def m13_path() -> Path:
    """Path of astropy's bundled real M13 frame."""
    import astropy.io.fits.hdu.compressed as compressed

    return Path(compressed.__file__).parent / "tests" / "data" / "m13.fits"


def synthetic_pair(
    shape: tuple[int, int] = SYNTHETIC_SHAPE, *, seed: int = SYNTHETIC_SEED
) -> tuple[FitsImage, FitsImage]:
    """A noisy simulated colour scene and its clean truth, as (noisy, clean) FitsImages.

    The data are (3, H, W) float32 linear ADU; the noise is Poisson with gain
    ``SYNTHETIC_GAIN`` e-/ADU plus Gaussian read noise of ``SYNTHETIC_READ_NOISE`` e-.
    """
    from napari_astrodenoise.simulate.noise import poisson_gaussian
    from napari_astrodenoise.simulate.sky import simulate_scene

    rng = np.random.default_rng(seed)
    scene = simulate_scene(shape, channels=3, seed=rng)
    noisy = poisson_gaussian(
        scene.image, gain=SYNTHETIC_GAIN, read_noise=SYNTHETIC_READ_NOISE, seed=rng
    ).astype(np.float32)
    images = []
    for label, data in (("noisy", noisy), ("clean", scene.image.astype(np.float32))):
        header = fits.Header()
        header["OBJECT"] = ("synthetic deep-sky scene", "napari-astrodenoise simulator")
        header["BUNIT"] = ("adu", "linear counts")
        header["GAIN"] = (SYNTHETIC_GAIN, "e-/ADU used for the Poisson noise")
        header["RDNOISE"] = (SYNTHETIC_READ_NOISE, "read noise, e-")
        header["SIMSEED"] = (seed, "simulator seed")
        header["HISTORY"] = f"napari-astrodenoise synthetic scene, {label} version"
        images.append(
            FitsImage(
                data=data,
                header=header,
                wcs=None,
                path=Path(f"synthetic_{label}.fits"),
                hdu_index=0,
                extname=None,
                name=f"synthetic {label}",
                bayer_pattern=None,
                kind="rgb",
            )
        )
    return images[0], images[1]


def sample_image(name: str) -> FitsImage:
    """One bundled sample as a FitsImage: ``"m13"`` or ``"synthetic"`` (the noisy version)."""
    if name == "m13":
        return read_fits(m13_path())[0]
    if name == "synthetic":
        return synthetic_pair()[0]
    msg = f"unknown sample {name!r}: choose 'm13' or 'synthetic'"
    raise ValueError(msg)


def m13_sample() -> list[tuple]:
    """napari sample: the real M13 frame bundled with astropy, read like any FITS file."""
    from napari_astrodenoise._reader import fits_layer_data

    return [fits_layer_data(sample_image("m13"))]


def synthetic_sample() -> list[tuple]:
    """napari sample: a simulated noisy colour scene and its clean truth, as two layers."""
    from napari_astrodenoise._reader import fits_layer_data

    noisy, clean = synthetic_pair()
    layers = [fits_layer_data(noisy), fits_layer_data(clean)]
    layers[1][1]["visible"] = False  # the truth, for comparison; the noisy frame is shown
    return layers
