"""Every user option of the engine, declared once: default, valid range, unit, FITS card, help.

The API (:func:`~napari_astrodenoise.core.pipeline.iter_denoise` and ``denoise``: their
signatures, validation and docstrings), the provenance cards and HISTORY line, the CLI's
flags and help, the widgets' controls and tooltips, and the benchmarks all read these tables.
Adding an option is one :class:`Option` here plus the stage that uses it.

Groups, in the order the engine applies them:

- :data:`OUTPUT`: how much of the network's change is kept (re-blended without a network pass);
- :data:`TILING`: how the frame is cut into overlapping tiles and blended back;
- :data:`NETWORK`: how the network is run on each tile;
- :data:`SAFEGUARDS`: what the change may do (:mod:`~napari_astrodenoise.core.safeguards`).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Option:
    """One user option: what it is, what it may be, and how it is shown and recorded.

    Attributes
    ----------
    name : str
        Keyword of the API (``flux_lock``); the CLI flag is ``--flux-lock``.
    default : int, float or str
    help : str
        One line, for the CLI, tooltips and docstrings.
    label : str
        Widget label, unit included.
    kind : type
        ``float``, ``int`` or ``str``.
    must : str
        What a valid value is, in words, for the error message ("a number of pixels >= 0").
    minimum, maximum : float, optional
        Inclusive bounds of a number.
    multiple : int, optional
        A whole number must be a multiple of this.
    choices : tuple
        The valid values, when there are few.
    unit : str
        Unit in the HISTORY line and the CLI's metavar ("px", "sigma"); "" for none.
    card, comment : str
        FITS keyword and comment of the provenance card.
    history : str
        Phrase of the HISTORY line ("flux lock").
    off : int or float, optional
        The value that turns a safeguard off.
    widget_max, step : float, optional
        Upper end and step of a widget's control (the API may take more).
    see : str
        The function that documents the option in full.
    tip : str
        The widget's tooltip, in an astrophotographer's words; the help line when empty.
    brief : str
        A few words for a one-line list (the CLI's ``--help``); the help line when empty.
    """

    name: str
    default: Any
    help: str
    label: str
    kind: type = float
    must: str = ""
    minimum: float | None = None
    maximum: float | None = None
    multiple: int | None = None
    choices: tuple = ()
    unit: str = ""
    card: str = ""
    comment: str = ""
    history: str = ""
    off: Any = None
    widget_max: float | None = None
    step: float | None = None
    see: str = ""
    tip: str = ""
    brief: str = ""

    @property
    def flag(self) -> str:
        """The CLI flag, ``--flux-lock``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` as this option's kind; ValueError with a one-line reason if it is invalid."""
        if not self._valid(value):
            msg = f"{self.name} must be {self.must}, got {value!r}"
            raise ValueError(msg)
        return self.kind(value)

    def _valid(self, value: Any) -> bool:
        if self.choices:
            return (
                not isinstance(value, bool)
                and value in self.choices
                and _same_kind(value, self.kind)
            )
        if not _same_kind(value, self.kind):
            return False
        if self.kind is str:
            return True
        if not np.isfinite(value):
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        return self.multiple is None or value % self.multiple == 0

    @property
    def tooltip(self) -> str:
        """What a widget shows on hover: the tip (or the help line) and the default."""
        text = self.tip or self.help[0].upper() + self.help[1:]
        return f"{text}. Default: {show_value(self.default)}."

    def nearest(self, value: Any) -> Any:
        """The valid value closest to a number: within the bounds, on the multiple."""
        if self.choices or self.kind is str:
            return value
        if self.multiple is not None:
            value = self.multiple * round(value / self.multiple)
        if self.minimum is not None:
            value = max(value, self.minimum)
        if self.maximum is not None:
            value = min(value, self.maximum)
        return self.kind(value)

    def describe(self) -> str:
        """The help line with the default, as docstrings show it."""
        return f"{self.help} (default {show_value(self.default)})"

    def summary(self) -> str:
        """The brief line with the default, as the CLI's ``--help`` lists it."""
        return f"{self.brief or self.help} (default {show_value(self.default)})"


def _same_kind(value: Any, kind: type) -> bool:
    if kind is str:
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    return isinstance(value, Integral if kind is int else Real)


def show_value(value: Any) -> str:
    """An option's value as the CLI, the help and the HISTORY line write it (8.0 -> "8")."""
    return f"{value:g}" if isinstance(value, float) else str(value)


#: What the two output weights share: a fraction from 0 to 1, in steps of 0.01 in a widget.
_WEIGHT = {"must": "between 0 and 1", "minimum": 0.0, "maximum": 1.0, "step": 0.01}
#: What the float safeguards share: >= 0, and 0 turns them off.
_OFF_AT_ZERO = {"minimum": 0.0, "off": 0.0}

OUTPUT = (
    Option(
        "strength",
        1.0,
        "how much of the network's change to keep: 1 all of it, 0 the input unchanged",
        "Strength",
        **_WEIGHT,
        card="ADSTRNTH",
        comment="denoise strength, 0..1",
        history="strength",
        tip=(
            "How much noise to remove: 1 removes all the model finds, 0.5 half of it, 0 "
            "leaves the image as it was. Changing it re-blends the last result at once, "
            "without running again"
        ),
        brief="how much noise to remove, 0..1",
    ),
    Option(
        "star_protection",
        0.0,
        "how much of the input to keep under the soft star mask (star cores), 0..1",
        "Star protection",
        **_WEIGHT,
        card="ADSTARPR",
        comment="star protection, 0..1",
        history="star protection",
        tip=(
            "Keep star cores as they were in your image: 0 denoises stars like the rest, 1 "
            "leaves them untouched. Uses the Star mask layer (Advanced) or finds the stars "
            "itself"
        ),
        brief="keep star cores as they were, 0..1",
    ),
)

TILING = (
    Option(
        "tile_size",
        256,
        "tile edge in pixels, a multiple of 16, at least 32",
        "Tile size (px)",
        kind=int,
        must="a multiple of 16 and at least 32",
        minimum=32,
        multiple=16,
        unit="px",
        card="ADTILE",
        comment="tile size, px",
        history="tiles",
        widget_max=2048,
        step=16,
        tip=(
            "The image is denoised in square pieces of this size (a multiple of 16). Larger "
            "is a little faster and needs more memory; the result hardly changes"
        ),
        brief="tile edge, a multiple of 16, >= 32",
    ),
    Option(
        "overlap",
        0.25,
        "overlap between neighbouring tiles, as a fraction of the tile, 0..0.75",
        "Overlap",
        must="a fraction of the tile from 0 to 0.75",
        minimum=0.0,
        maximum=0.75,
        card="ADOVERLP",
        comment="tile overlap fraction",
        history="overlap",
        step=0.05,
        tip=(
            "How much neighbouring pieces overlap; they are blended smoothly so no seams "
            "show. More overlap is slower"
        ),
        brief="tile overlap, 0..0.75 of a tile",
    ),
    Option(
        "blend",
        "gaussian",
        "how overlapping tiles are joined: Gaussian weights, or none (naive tiles, to compare)",
        "Blend",
        kind=str,
        must="one of 'gaussian', 'none'",
        choices=("gaussian", "none"),
        card="ADBLEND",
        comment="tile blending",
        history="blend",
        tip=(
            "How overlapping pieces are joined: 'gaussian' (smooth, no seams) or 'none' (only"
            " to see what seams would look like)"
        ),
        brief="how tiles are joined",
    ),
    Option(
        "sigma_scale",
        0.125,
        "Gaussian blending sigma as a fraction of the tile",
        "Blend sigma / tile",
        must="a positive fraction of the tile size",
        minimum=np.nextafter(0.0, 1.0),
        card="ADSIGSCL",
        comment="Gaussian blend sigma / tile",
        history="blend sigma",
        widget_max=1.0,
        step=0.025,
        tip=("Width of the smooth blend between pieces, as a fraction of the piece"),
        brief="blend width, fraction of a tile",
    ),
)

NETWORK = (
    Option(
        "ensemble",
        1,
        "average the network over this many flips / transposes of each tile: cleaner, "
        "that many times slower",
        "Ensemble",
        kind=int,
        must="one of 1, 2, 4, 8",
        choices=(1, 2, 4, 8),
        card="ADENSMBL",
        comment="flips/transposes averaged per tile",
        history="self-ensemble",
        tip=(
            "Run the model on flipped copies of each piece and average them: a little "
            "cleaner, and 2, 4 or 8 times slower"
        ),
        brief="average flipped tiles, slower",
    ),
    Option(
        "precision",
        "auto",
        "number format of the network alone (stretch, blending and safeguards stay float32): "
        "bf16 is about twice as fast where the processor has it; auto picks it there",
        "Precision",
        kind=str,
        must="one of 'auto', 'fp32', 'bf16'",
        choices=("auto", "fp32", "bf16"),
        card="ADPRECIS",
        comment="network number format used",
        history="precision",
        see="napari_astrodenoise.core.predictor.resolve_precision",
        brief="number format: auto, fp32, bf16",
    ),
)

SAFEGUARDS = (
    Option(
        "flux_lock",
        8.0,
        "keep the input's level, flux and colour at scales beyond this Gaussian sigma; 0: off",
        "Flux lock (px)",
        must="a number of pixels >= 0 (0: off)",
        **_OFF_AT_ZERO,
        unit="px",
        card="ADFLUXLK",
        comment="flux kept beyond this sigma, px",
        history="flux lock",
        widget_max=256.0,
        step=1.0,
        see="napari_astrodenoise.core.fluxlock.lock_flux",
        tip=(
            "Keep the brightness and colour of anything larger than this many pixels "
            "(nebulae, galaxies, the sky gradient) exactly as in your image. 0 turns it off"
        ),
        brief="keep flux beyond this sigma; 0 off",
    ),
    Option(
        "lock_threshold",
        1.0,
        "away from stars and signal, hold scales from the flux lock's to 4x it only where the "
        "change exceeds this many sigmas of their noise; 0: strict lock",
        "Lock threshold (σ)",
        must="a number of noise sigmas >= 0 (0: strict)",
        **_OFF_AT_ZERO,
        unit="sigma",
        card="ADLOCKTH",
        comment="flux lock threshold, sigma",
        history="lock threshold",
        widget_max=10.0,
        step=0.5,
        see="napari_astrodenoise.core.fluxlock.lock_flux",
        tip=(
            "On empty sky, let the model smooth blotches up to 4x the flux-lock size unless "
            "the change looks like real signal (this many noise sigmas). 0 locks strictly"
        ),
        brief="flux lock threshold; 0 strict",
    ),
    Option(
        "change_limit",
        3.0,
        "keep every pixel within this many noise sigmas of the input; 0: off",
        "Change limit (σ)",
        must="a number of noise sigmas >= 0 (0: off)",
        **_OFF_AT_ZERO,
        unit="sigma",
        card="ADCHGLIM",
        comment="change kept within N noise sigma",
        history="change limit",
        widget_max=100.0,
        step=0.5,
        see="napari_astrodenoise.core.safeguards.limit_change",
        tip=(
            "No pixel may change by more than this many times the noise: nothing bright can "
            "be invented or erased. 0 turns it off"
        ),
        brief="most a pixel may change; 0 off",
    ),
    Option(
        "peak_cap",
        1,
        "no output pixel brighter than the brightest input pixel within this many pixels; 0: off",
        "Peak cap (px)",
        kind=int,
        must="a whole number of pixels >= 0 (0: off)",
        minimum=0,
        unit="px",
        card="ADPKCAP",
        comment="no pixel above input max within N px",
        history="peak cap",
        off=0,
        widget_max=16,
        step=1,
        see="napari_astrodenoise.core.safeguards.cap_peaks",
        tip=(
            "No pixel may come out brighter than the brightest pixel around it in your image "
            "(within this many pixels). 0 turns it off"
        ),
        brief="no new peak within N px; 0 off",
    ),
    Option(
        "star_refit",
        0.04,
        "rescale stars to the flux the input supports, within a prior of this relative "
        "width; 0: off",
        "Star refit",
        must="a relative flux >= 0 (0: off)",
        **_OFF_AT_ZERO,
        card="ADREFIT",
        comment="star flux refit prior, 0: off",
        history="star refit",
        widget_max=1.0,
        step=0.01,
        see="napari_astrodenoise.core.starrefit.refit_stars",
        tip=(
            "Give star cores back the brightness your image supports, so stars keep their "
            "photometry. 0 turns it off"
        ),
        brief="star flux prior width; 0 off",
    ),
)

#: Every option of a denoising run, in the order of the provenance cards.
DENOISE = OUTPUT + TILING + NETWORK + SAFEGUARDS

_BY_NAME = {o.name: o for o in DENOISE}


def option(name: str) -> Option:
    """The :class:`Option` called ``name``."""
    return _BY_NAME[name]


def defaults(group: Iterable[Option] = DENOISE) -> dict[str, Any]:
    """``{name: default}`` of a group."""
    return {o.name: o.default for o in group}


def turned_off(group: Iterable[Option] = SAFEGUARDS) -> dict[str, Any]:
    """``{name: off}`` of the options of a group that can be turned off."""
    return {o.name: o.off for o in group if o.off is not None}


def resolve(
    given: Mapping[str, Any], group: Iterable[Option] = DENOISE, *, caller: str = "denoise"
) -> dict[str, Any]:
    """Every option of ``group``: the given values checked, the defaults for the rest.

    Raises
    ------
    TypeError
        A keyword that is not an option of the group (as Python says for a function).
    ValueError
        A value out of its option's range.
    """
    group = tuple(group)
    names = {o.name for o in group}
    unknown = sorted(set(given) - names)
    if unknown:
        msg = f"{caller}() got an unexpected keyword argument {unknown[0]!r}"
        raise TypeError(msg)
    return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in group}


def with_options(
    group: Iterable[Option],
    *,
    like: Callable | None = None,
    omit: Iterable[str] = (),
    returns: Any = inspect.Parameter.empty,
) -> Callable[[Callable], Callable]:
    """Decorate a function taking ``**options``: its signature and docstring list the group.

    ``inspect.signature``, ``help()`` and IDEs then show each option as a keyword-only
    argument with its default, and the docstring's ``Parameters`` gains one entry per option
    (its help line and default), before ``Returns``. With ``like``, a function that forwards
    (``denoise(image, **kwargs)``) shows the other function's own arguments too, after its
    own, but for those named in ``omit``.
    """
    group = tuple(group)
    hidden = {*_BY_NAME, *(o.name for o in group), *omit}

    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if like is not None:
            params += [
                p
                for p in inspect.signature(like).parameters.values()
                if p.kind is not p.VAR_KEYWORD and p.name not in sig.parameters
            ]
        params = [p for p in params if p.name not in hidden]
        params += [
            inspect.Parameter(
                o.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=o.default,
                annotation=o.kind.__name__,
            )
            for o in group
        ]
        ret = sig.return_annotation if returns is inspect.Parameter.empty else returns
        func.__signature__ = sig.replace(parameters=params, return_annotation=ret)
        func.__doc__ = _document(func.__doc__ or "", group)
        return func

    return decorate


def _document(doc: str, group: tuple[Option, ...]) -> str:
    """Insert the group's numpydoc entries before the docstring's ``Returns`` section."""
    found = re.search(r"\n( *)Returns\n *-+\n", doc)
    indent = found.group(1) if found else "    "
    entries = []
    for o in group:
        kind = f"{{{', '.join(map(repr, o.choices))}}}" if o.choices else o.kind.__name__
        text = o.describe() + (f"; see :func:`~{o.see}`" if o.see else "")
        body = textwrap.fill(text + ".", 92, initial_indent=indent + "    ")
        body = body.replace("\n", "\n" + indent + "    ")
        entries.append(f"{indent}{o.name} : {kind}, optional\n{body}\n")
    block = "".join(entries)
    if found:
        head, tail = doc[: found.start()], doc[found.start() :]
        return f"{head.rstrip()}\n{block}{tail}"
    return f"{doc.rstrip()}\n\n{indent}Options\n{indent}-------\n{block}"
