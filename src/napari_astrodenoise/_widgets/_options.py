"""Widget controls built from the engine's option table (labels, ranges, tooltips, defaults)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magicgui.widgets import ComboBox, FloatSlider, FloatSpinBox, SpinBox, Widget

from napari_astrodenoise.core.options import Option


def option_control(option: Option) -> Widget:
    """The control of one option, named after it: a combo box for choices, a slider for a
    bounded fraction, a spin box otherwise; the option's help is its tooltip."""
    common = {"name": option.name, "label": option.label, "tooltip": option.help}
    if option.choices:
        return ComboBox(choices=option.choices, value=option.default, **common)
    top = option.maximum if option.maximum is not None else option.widget_max
    limits = {"min": option.minimum, "max": top, "step": option.step, "value": option.default}
    if option.kind is int:
        return SpinBox(**limits, **common)
    bounded = option.maximum is not None and option.maximum <= 1
    return (FloatSlider if bounded else FloatSpinBox)(**limits, **common)


def option_controls(group: Iterable[Option]) -> dict[str, Widget]:
    """``{name: control}`` for each option of a group, in order."""
    return {o.name: option_control(o) for o in group}


def option_values(controls: dict[str, Widget], group: Iterable[Option]) -> dict[str, Any]:
    """The controls' values as the options' kinds, ready for the engine."""
    return {o.name: o.kind(controls[o.name].value) for o in group}
