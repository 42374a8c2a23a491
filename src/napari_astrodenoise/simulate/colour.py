"""Colours of simulated light: blackbody star colours, emission and dust colours, per channel."""

from __future__ import annotations

import numpy as np

__all__ = ["blackbody_rgb"]

#: Effective wavelengths (micrometres) of the R, G, B channels used for star colours.
RGB_WAVELENGTHS_UM = (0.61, 0.53, 0.46)
#: White point: a G2V star (the Sun) is rendered grey, as after colour calibration.
WHITE_POINT_K = 5800.0
_HC_OVER_K_UM_K = 14387.77  # h c / k_B in micrometre kelvin

#: Emission colours (R, G, B) of nebular components, relative.
NEBULA_COLOURS = {
    "h_alpha": (1.0, 0.14, 0.18),  # H-alpha + [SII] red, a little H-beta blue
    "oiii": (0.08, 0.85, 0.80),  # [OIII] teal
    "reflection": (0.35, 0.55, 1.0),  # starlight scattered by dust, blue
    "ifn": (0.85, 0.75, 0.62),  # broadband dust glow, brownish grey
}
#: Relative optical depth of dust in R, G, B (reddening: blue is absorbed most).
DUST_REDDENING = (0.8, 1.0, 1.3)


def blackbody_rgb(temperature: float | np.ndarray) -> np.ndarray:
    """RGB flux ratios of a blackbody, white-balanced to a 5800 K star and with mean 1.

    Parameters
    ----------
    temperature : float or ndarray
        Temperature(s) in kelvin, > 0.

    Returns
    -------
    ndarray
        ``(..., 3)`` ratios R, G, B; each row has mean 1. A 3000 K star comes out about
        (1.6, 0.9, 0.5) and a 30000 K star about (0.6, 0.9, 1.5).
    """
    t = np.asarray(temperature, dtype=np.float64)[..., None]
    if np.any(~np.isfinite(t) | (t <= 0)):
        msg = "temperature must be finite and > 0 kelvin"
        raise ValueError(msg)
    lam = np.asarray(RGB_WAVELENGTHS_UM)
    planck = lam**-5 / np.expm1(_HC_OVER_K_UM_K / (lam * t))
    white = lam**-5 / np.expm1(_HC_OVER_K_UM_K / (lam * WHITE_POINT_K))
    ratio = planck / white
    return ratio / ratio.mean(axis=-1, keepdims=True)


def _channel_colours(rgb: np.ndarray, channels: int) -> np.ndarray:
    """``(..., 3)`` RGB ratios -> ``(..., channels)``; mono takes the RGB mean."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb if channels == 3 else rgb.mean(axis=-1, keepdims=True)
