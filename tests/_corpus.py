"""The bad-input corpus: small broken or odd files made on the fly, with what each must give.

Nothing here is committed as data: each case is a function that writes its file into a
folder. ``BAD_INPUTS`` must be refused (the reader raises, the command exits 2 with one
line); ``ODD_INPUTS`` must be read and denoised; ``BAD_MODELS`` are model files the command
must refuse in one line naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits

SHAPE = (48, 56)


def sky(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """A small noisy sky with one star, float32."""
    rng = np.random.default_rng(seed)
    data = (500 + rng.normal(0, 8, size=shape)).astype(np.float32)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    data += (4000 * np.exp(-((yy - 20) ** 2 + (xx - 25) ** 2) / 4.0)).astype(np.float32)
    return data


def fits_bytes(data: np.ndarray | None = None, **cards: object) -> bytes:
    """A FITS file's bytes: one primary HDU of ``data`` (a small sky by default)."""
    hdu = fits.PrimaryHDU(sky() if data is None else data)
    hdu.header.update(cards)
    from io import BytesIO

    buffer = BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def _bad_crc_gzip(path: Path) -> None:
    raw = bytearray(gzip.compress(fits_bytes(), mtime=0))
    raw[-8] ^= 0xFF  # the CRC32 of the trailer: the pixels decompress, the check fails
    path.write_bytes(bytes(raw))


def _corrupt_gzip_body(path: Path) -> None:
    raw = bytearray(gzip.compress(fits_bytes(), mtime=0))
    middle = len(raw) // 2
    raw[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(raw))


def _damaged_header(path: Path) -> None:
    good = fits_bytes()
    old = b"BITPIX  =                  -32"
    path.write_bytes(good.replace(old, b"BITPIX  =                  -33", 1))


def _header_text_size(path: Path) -> None:
    good = fits_bytes()
    old = b"NAXIS1  =                   56"
    path.write_bytes(good.replace(old, b"NAXIS1  =                 'ab'", 1))


def _four_d(path: Path) -> None:
    fits.PrimaryHDU(np.ones((2, 2, 8, 8), np.float32)).writeto(path)


def _table_only(path: Path) -> None:
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)


#: name -> (maker writing the file at the given path, file name, what the error says)
BAD_INPUTS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "missing": (lambda p: None, "missing.fits", "no such file"),
    "empty": (lambda p: p.write_bytes(b""), "empty.fits", "empty"),
    "garbage": (lambda p: p.write_bytes(b"GIF89a" * 600), "garbage.fits", "not a valid FITS"),
    "truncated": (lambda p: p.write_bytes(fits_bytes()[:4000]), "truncated.fits", "truncated"),
    "table_only": (_table_only, "table.fits", "no 2-D or 3-D image"),
    "one_d": (lambda p: fits.PrimaryHDU(np.ones(40)).writeto(p), "vector.fits", "1-D image"),
    "four_d": (_four_d, "hyper.fits", "4-D image"),
    "gzip_bad_crc": (_bad_crc_gzip, "crc.fits.gz", "gzip stream is corrupt"),
    "gzip_bad_crc_named_fits": (_bad_crc_gzip, "crc_named.fits", "gzip stream is corrupt"),
    "gzip_corrupt_body": (_corrupt_gzip_body, "body.fits.gz", "gzip stream is corrupt"),
    "gzip_truncated": (
        lambda p: p.write_bytes(gzip.compress(fits_bytes())[:900]),
        "short.fits.gz",
        "truncated",
    ),
    "bzip2_truncated": (
        lambda p: p.write_bytes(bz2.compress(fits_bytes())[:300]),
        "short_bz2.fits",
        "truncated",
    ),
    "damaged_bitpix": (_damaged_header, "bitpix.fits", "header is damaged"),
    "damaged_naxis": (_header_text_size, "naxis.fits", "header is damaged"),
    "a_folder": (lambda p: p.mkdir(), "folder.fits", "not a regular file"),
}

#: name -> (maker, file name): files that look wrong by name or content but must be read
ODD_INPUTS: dict[str, tuple[Callable[[Path], object], str]] = {
    "gzip_named_fits": (lambda p: p.write_bytes(gzip.compress(fits_bytes())), "zipped.fits"),
    "bzip2_named_fits": (lambda p: p.write_bytes(bz2.compress(fits_bytes())), "bzipped.fits"),
    "bzip2": (lambda p: p.write_bytes(bz2.compress(fits_bytes())), "b.fits.bz2"),
    "non_ascii_path": (lambda p: p.write_bytes(fits_bytes()), "Jérôme/NGC 7000 Ha.fits"),
    "big_endian_int": (
        lambda p: p.write_bytes(fits_bytes((sky() * 10).astype(">i4"), BZERO=0.0, BSCALE=0.1)),
        "int32.fits",
    ),
}


def make(folder: Path, maker: Callable[[Path], object], name: str) -> Path:
    """Write one case's file under ``folder`` (sub-folders made) and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    maker(path)
    return path


def sha256(path: Path) -> str | None:
    """The file's sha256, or None when there is no such file (or it is a folder)."""
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- models


def _copy_model(source: Path, folder: Path) -> tuple[Path, Path, dict]:
    """A copy of a model's two files in ``folder``: (config, weights, config as a dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = source.with_suffix(".json")
    shutil.copy(source, folder / source.name)
    shutil.copy(config, folder / config.name)
    return folder / config.name, folder / source.name, json.loads(config.read_text())


def _save(config_path: Path, config: object) -> None:
    config_path.write_text(json.dumps(config))


def _set(key: str, value: object) -> Callable[[Path, Path, dict], None]:
    def change(config_path: Path, _weights: Path, config: dict) -> None:
        config[key] = value
        _save(config_path, config)

    return change


def _drop(key: str) -> Callable[[Path, Path, dict], None]:
    def change(config_path: Path, _weights: Path, config: dict) -> None:
        del config[key]
        _save(config_path, config)

    return change


def _pickle_renamed(config_path: Path, weights: Path, config: dict) -> None:
    import torch
    from safetensors.torch import load_file

    state = {key: value.clone() for key, value in load_file(weights).items()}
    weights.unlink()  # the tensors were mapped from it
    torch.save(state, weights)  # a pickle under the .safetensors name
    config["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    _save(config_path, config)


def _wider(config_path: Path, _weights: Path, config: dict) -> None:
    config["architecture"]["width"] *= 2
    _save(config_path, config)


def _deeper(config_path: Path, _weights: Path, config: dict) -> None:
    config["architecture"]["depth"] += 1
    _save(config_path, config)


def _unknown_architecture(config_path: Path, _weights: Path, config: dict) -> None:
    config["architecture"]["type"] = "SwinIR"
    _save(config_path, config)


#: name -> (change made to a copy of a good model's files, what the error says)
BAD_MODELS: dict[str, tuple[Callable[[Path, Path, dict], None], str]] = {
    "config_not_json": (lambda c, w, d: c.write_text("{ not json"), "not valid JSON"),
    "config_a_list": (lambda c, w, d: _save(c, [d]), "not an object"),
    "no_sha256": (_drop("sha256"), "no 'sha256'"),
    "no_weights_file_field": (_drop("weights_file"), "no 'weights_file'"),
    "weights_missing": (lambda c, w, d: w.unlink(), "weights file is missing"),
    "sha256_mismatch": (_set("sha256", "0" * 64), "does not match"),
    "pickle_renamed": (_pickle_renamed, "it is a pickle"),
    "width_mismatch": (_wider, "do not fit the architecture"),
    "depth_mismatch": (_deeper, "do not fit the architecture"),
    "unknown_architecture": (_unknown_architecture, "unknown architecture type 'SwinIR'"),
    "not_our_format": (_set("format", "other/1"), "not a napari-astrodenoise model"),
}


def make_model(source: Path, folder: Path, case: str) -> Path:
    """A broken copy of the model at ``source`` (its .safetensors): returns the config path."""
    config_path, weights, config = _copy_model(source, folder)
    change, _ = BAD_MODELS[case]
    change(config_path, weights, config)
    return config_path
