"""Shared fixtures: the real FITS files beside the checkout and astropy's bundled M13 frames."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fits"
SHARED_FORMATS = SHARED_DATA.parent / "formats"


def _astropy_fits_data() -> Path:
    import astropy.io.fits.hdu.compressed as compressed

    return Path(compressed.__file__).parent / "tests" / "data"


@pytest.fixture(scope="session")
def shared_fits_dir() -> Path:
    """``../shared/data/fits`` beside the checkout; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real FITS data not found at {SHARED_DATA} (../shared/data beside the checkout)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_formats_dir() -> Path:
    """``../shared/data/formats`` (real XISF files) beside the checkout; skips where absent."""
    if not SHARED_FORMATS.is_dir():
        pytest.skip(
            f"real XISF files not found at {SHARED_FORMATS} (../shared/data beside the checkout)"
        )
    return SHARED_FORMATS


@pytest.fixture(scope="session")
def m13_dir() -> Path:
    """Folder holding astropy's bundled real M13 cutout and its compressed variants."""
    path = _astropy_fits_data()
    if not (path / "m13.fits").is_file():
        pytest.skip(f"astropy's bundled m13.fits not found under {path}")
    return path


def _ramp(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """Distinct values everywhere, so any flip, transpose or shift shows."""
    return np.arange(int(np.prod(shape)), dtype="float64").reshape(shape).astype(dtype)


def _write_crafted(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}

    def save(name: str, hdus: list) -> None:
        files[name.split(".")[0]] = folder / name
        fits.HDUList(hdus).writeto(folder / name)

    # integers with BSCALE/BZERO/BLANK: physical = 100 + 0.5 * raw, raw -32768 is blank
    raw = _ramp((6, 7), "int16") - 20
    raw[2, 3] = -32768
    hdu = fits.PrimaryHDU(raw)
    hdu.header.update(BSCALE=0.5, BZERO=100.0, BLANK=-32768)
    save("scaled_int16.fits", [hdu])
    # float32 with NaN and both infinities
    nonfinite = _ramp((5, 8))
    nonfinite[0, 0], nonfinite[1, 2], nonfinite[4, 7] = np.nan, np.inf, -np.inf
    save("nonfinite.fits", [fits.PrimaryHDU(nonfinite)])
    # big-endian float64 pixels (BITPIX -64)
    save("float64.fits", [fits.PrimaryHDU(_ramp((4, 9), ">f8") / 7.0)])
    # multi-extension: empty primary, SCI and ERR images, a table, a 1-D vector
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.ones(3))])
    save(
        "mef.fits",
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(_ramp((10, 12)), name="SCI"),
            fits.ImageHDU(_ramp((10, 12)) + 1000, name="ERR"),
            table,
            fits.ImageHDU(_ramp((12,)), name="VECTOR"),
        ],
    )
    save("cube3.fits", [fits.PrimaryHDU(_ramp((3, 8, 10)))])
    save("cube5.fits", [fits.PrimaryHDU(_ramp((5, 8, 10)))])
    save("plane1.fits", [fits.PrimaryHDU(_ramp((1, 8, 10)))])
    save("gzipped.fits.gz", [fits.PrimaryHDU(_ramp((6, 7)))])
    tiled = fits.CompImageHDU(_ramp((16, 20), "int16"), compression_type="RICE_1")
    save("tiled.fits.fz", [fits.PrimaryHDU(), tiled])
    bayer = fits.PrimaryHDU(_ramp((8, 12), "uint16"))
    bayer.header["BAYERPAT"] = ("RGGB", "Bayer pattern")
    save("bayer.fits", [bayer])
    wcs = fits.PrimaryHDU(_ramp((20, 30)))
    wcs.header.update(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=15.0, CRPIX2=10.0,
        CRVAL1=250.42, CRVAL2=36.46, CDELT1=-2.8e-4, CDELT2=2.8e-4,
    )  # fmt: skip
    save("with_wcs.fits", [wcs])

    # files the reader takes (by name) but cannot read
    good = (folder / "nonfinite.fits").read_bytes()
    (folder / "truncated.fits").write_bytes(good[: 2880 + 40])
    save("table_only.fits", [fits.PrimaryHDU(), table])
    save("one_d.fits", [fits.PrimaryHDU(_ramp((50,)))])
    save("zero_shape.fits", [fits.PrimaryHDU(np.zeros((0, 4), np.float32))])
    (folder / "empty.fits").write_bytes(b"")
    files["empty"] = folder / "empty.fits"
    (folder / "garbage.fits").write_bytes(b"GIF89a not a FITS file at all " * 200)
    files["garbage"] = folder / "garbage.fits"
    files["truncated"] = folder / "truncated.fits"
    (folder / "notes.txt").write_text("SIMPLE  =                    T")
    files["notes"] = folder / "notes.txt"
    return files


#: crafted files that napari_get_reader takes but read_fits must refuse
BROKEN_FITS = ("truncated", "table_only", "one_d", "zero_shape", "empty", "garbage")


@pytest.fixture(scope="session")
def crafted_fits(tmp_path_factory) -> dict[str, Path]:
    """Small FITS files made once per session, keyed by case (see ``_write_crafted``).

    Readable: ``scaled_int16`` (BSCALE 0.5, BZERO 100, BLANK at [2, 3]), ``nonfinite``
    (NaN at [0, 0], +inf at [1, 2], -inf at [4, 7]), ``float64``, ``mef`` (SCI, ERR, a table,
    a 1-D vector), ``cube3``, ``cube5``, ``plane1`` (NAXIS3 = 1), ``gzipped`` (.fits.gz),
    ``tiled`` (.fits.fz, RICE), ``bayer`` (BAYERPAT RGGB), ``with_wcs``. Broken: the names
    in ``BROKEN_FITS``. Not FITS: ``notes`` (.txt).
    """
    return _write_crafted(tmp_path_factory.mktemp("crafted_fits"))


@pytest.fixture(params=BROKEN_FITS)
def broken_fits(request, crafted_fits) -> Path:
    """Each crafted file with a FITS name that cannot be read (a test per file)."""
    return crafted_fits[request.param]


# --------------------------------------------------------------------------- models
# Small models built here, never a shipped default: the identity (a fresh ResUNet's zeroed
# tail) and one with a random, context-dependent residual.


def _build_model(tmp_path_factory, name: str, *, identity: bool, in_channels: int = 3):
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import save_model

    torch.manual_seed(0)
    module = ResUNet(ResUNetConfig(in_channels=in_channels, width=8, depth=2))
    if not identity:  # a random residual: output depends on context, like a real network
        torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("models") / f"{name}.safetensors"
    save_model(module, path, name=name, softening=3.0)
    return path


@pytest.fixture(scope="session")
def identity_model_path(tmp_path_factory):
    """A freshly initialised ResUNet: its zeroed tail makes it the identity."""
    return _build_model(tmp_path_factory, "identity-test", identity=True)


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory):
    """A small ResUNet with a random, context-dependent residual."""
    return _build_model(tmp_path_factory, "random-test", identity=False)


@pytest.fixture(scope="session")
def random_model(random_model_path):
    from napari_astrodenoise.core.weights import load_model

    return load_model(random_model_path)


@pytest.fixture(scope="session")
def identity_model(identity_model_path):
    from napari_astrodenoise.core.weights import load_model

    return load_model(identity_model_path)


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """A fresh settings folder (``ASTRODENOISE_CONFIG_DIR``): no test reads or writes the
    user's own settings."""
    folder = tmp_path / "config"
    monkeypatch.setenv("ASTRODENOISE_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty user model directory (``ASTRODENOISE_MODELS_DIR``) for this test."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv("ASTRODENOISE_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def own_lock_model(models_dir, random_model):
    """The random model saved as the user model "own-lock", which carries its own option
    ``flux_lock = 0`` (as a fine-tuned model whose frames showed that it keeps flux)."""
    from napari_astrodenoise.core.weights import save_model, user_model_path

    path = save_model(
        random_model.module,
        user_model_path("own-lock"),
        name="own-lock",
        softening=random_model.softening,
        extra={"options": {"flux_lock": 0.0}, "origin": "user"},
    )
    return path.with_suffix(".json")


def _drifting_frames(n: int = 2, shape: tuple[int, int] = (160, 160)) -> list[np.ndarray]:
    """Sub-exposures of one star field, each drifted by (3, -2) px from the last."""
    from napari_astrodenoise.simulate.noise import poisson_gaussian

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[: shape[0] + 40, : shape[1] + 40]
    sky = np.full(yy.shape, 200.0)
    for y, x, f in zip(*rng.uniform([0, 0, 3e3], [*yy.shape, 3e4], (60, 3)).T, strict=True):
        sky += f / (2 * np.pi * 1.5**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    out = []
    for k in range(n):
        clean = sky[20 + 3 * k : 20 + 3 * k + shape[0], 20 - 2 * k : 20 - 2 * k + shape[1]]
        out.append(poisson_gaussian(clean, gain=1.0, read_noise=6.0, seed=k).astype(np.float32))
    return out


@pytest.fixture
def drifting_frames():
    """``drifting_frames(n=2)``: raw sub-exposures of one star field that drifts, float32."""
    return _drifting_frames


@pytest.fixture
def context_spy():
    """A context manager that records "enter" and "leave" in its ``seen`` list."""
    seen: list[str] = []

    @contextlib.contextmanager
    def spy():
        seen.append("enter")
        yield True
        seen.append("leave")

    spy.seen = seen
    return spy
