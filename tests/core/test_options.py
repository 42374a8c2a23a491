"""The option table: one declaration per option, read by the API, provenance, CLI and docs."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from napari_astrodenoise.core import options
from napari_astrodenoise.core.options import DENOISE, SAFEGUARDS, TILING, Option, resolve
from napari_astrodenoise.core.pipeline import denoise, iter_denoise, iter_seam_map, seam_map


@pytest.mark.parametrize("o", DENOISE, ids=lambda o: o.name)
def test_every_default_is_valid_and_of_its_kind(o):
    assert o.check(o.default) == o.default
    assert type(o.check(o.default)) is o.kind
    if o.off is not None:
        assert o.check(o.off) == o.off


def test_names_cards_and_flags_are_unique():
    for attr in ("name", "card", "flag", "label", "history"):
        values = [getattr(o, attr) for o in DENOISE]
        assert len(set(values)) == len(values), attr
    assert all(1 <= len(o.card) <= 8 and o.card.isupper() for o in DENOISE)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("tile_size", 100),
        ("tile_size", 256.0),
        ("overlap", 0.8),
        ("blend", "box"),
        ("sigma_scale", 0.0),
        ("ensemble", 2.0),
        ("ensemble", True),
        ("peak_cap", 1.5),
        ("flux_lock", float("nan")),
        ("strength", "1"),
    ],
)
def test_an_invalid_value_gets_a_one_line_reason_naming_the_option(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be .*, got ") as err:
        options.option(name).check(bad)
    assert "\n" not in str(err.value)


def test_resolve_fills_defaults_and_refuses_an_unknown_keyword():
    got = resolve({"flux_lock": 4}, SAFEGUARDS)
    assert got == {**options.defaults(SAFEGUARDS), "flux_lock": 4.0}
    assert type(got["flux_lock"]) is float
    with pytest.raises(TypeError, match="unexpected keyword argument 'flux_lok'"):
        resolve({"flux_lok": 4}, SAFEGUARDS)


def test_turned_off_covers_every_safeguard():
    assert set(options.turned_off()) == {o.name for o in SAFEGUARDS}


@pytest.mark.parametrize(
    ("func", "group"),
    [(iter_denoise, DENOISE), (denoise, DENOISE), (iter_seam_map, TILING), (seam_map, TILING)],
    ids=["iter_denoise", "denoise", "iter_seam_map", "seam_map"],
)
def test_the_api_signature_and_docstring_list_every_option_with_its_default(func, group):
    params = inspect.signature(func).parameters
    for o in group:
        assert params[o.name].default == o.default
        assert params[o.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert f"    {o.name} : " in func.__doc__
    assert "model" in params and "channel_axis" in params  # the forwarded run arguments


def test_denoise_refuses_an_unknown_keyword_before_any_work():
    with pytest.raises(TypeError, match="unexpected keyword argument 'strenght'"):
        denoise(np.zeros((16, 16), np.float32), strenght=0.5)


def test_a_new_option_reaches_the_signature_the_docstring_and_the_check():
    extra = Option("gain", 2.0, "a made-up option", "Gain", must="positive", minimum=0.0)

    @options.with_options((extra,))
    def run(image, **kwargs):
        """Run.

        Returns
        -------
        dict
        """
        return resolve(kwargs, (extra,), caller="run")

    assert inspect.signature(run).parameters["gain"].default == 2.0
    assert run.__doc__.index("gain : float") < run.__doc__.index("Returns")
    assert run(None) == {"gain": 2.0}
    with pytest.raises(ValueError, match="gain must be positive"):
        run(None, gain=-1.0)
