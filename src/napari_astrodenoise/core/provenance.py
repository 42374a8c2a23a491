"""Provenance of a denoising run: FITS cards and a HISTORY line, from its settings.

The cards of the run's options (one per :class:`~napari_astrodenoise.core.options.Option`,
with the keyword and comment declared there) follow the cards of the software, the model and
the device. The result goes to :func:`napari_astrodenoise.fits_io.write_fits` (``provenance``
and ``history``) and into the napari layers' metadata (``"astrodenoise"``).
"""

from __future__ import annotations

from typing import Any

from napari_astrodenoise.core.options import DENOISE, Option, show_value


def provenance(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"provenance": {KEYWORD: (value, comment)}, "history": [line]}`` of a run's settings.

    ``settings`` is :attr:`DenoiseResult.settings
    <napari_astrodenoise.core.pipeline.DenoiseResult.settings>`: the model's name and
    sha256, the device, the stretch's softening, whether the data were a Bayer mosaic, and
    every option of the run.
    """
    from napari_astrodenoise import __version__

    cards = {
        "ADVERS": (__version__, "napari-astrodenoise version"),
        "ADMODEL": (settings["model"], "denoising model name"),
        "ADMSHA": (settings["sha256"], ""),  # 64 hex digits fill the card: no comment
        "ADSOFTEN": (float(settings["softening"]), "asinh softening, noise sigmas"),
        "ADDEVICE": (settings["device"], "torch device used"),
        "ADBAYER": (bool(settings.get("bayer", False)), "Bayer sub-planes denoised apart"),
    }
    for o in DENOISE:
        cards[o.card] = (o.kind(settings[o.name]), o.comment)
    options = ", ".join(phrase(o, settings[o.name]) for o in DENOISE)
    history = [
        f"napari-astrodenoise {__version__}: denoised with model {settings['model']} "
        f"(sha256 {settings['sha256'][:16]}), {options}, device {settings['device']}; "
        "data kept linear, not clipped or rescaled"
    ]
    if settings.get("unchanged"):
        cards["ADSAME"] = (True, "output equals the input")
        history.append(
            f"napari-astrodenoise: the output equals the input: {settings['unchanged']}"
        )
    return {"provenance": cards, "history": history}


def phrase(option: Option, value: Any) -> str:
    """An option and its value as the HISTORY line says them (\"flux lock 8 px\")."""
    return f"{option.history} {show_value(value)}" + (f" {option.unit}" if option.unit else "")
