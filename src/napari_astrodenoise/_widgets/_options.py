"""Widget controls built from the engine's option table (labels, ranges, tooltips, defaults)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magicgui.widgets import ComboBox, FloatSlider, FloatSpinBox, SpinBox, Widget

from napari_astrodenoise.core.options import Option


def option_control(option: Option) -> Widget:
    """The control of one option, named after it: a combo box for choices, a slider for a
    bounded fraction, a spin box otherwise; the option's tooltip is its tooltip.

    A number that must be a multiple (the tile size) snaps to the nearest valid value when
    it is typed in, so an invalid value cannot stand in the control.
    """
    common = {"name": option.name, "label": option.label, "tooltip": option.tooltip}
    if option.choices:
        return ComboBox(choices=option.choices, value=option.default, **common)
    top = option.maximum if option.maximum is not None else option.widget_max
    limits = {"min": option.minimum, "max": top, "step": option.step, "value": option.default}
    if option.kind is int:
        control = SpinBox(**limits, **common)
        if option.multiple is not None:
            _snap(control, option)
        return control
    bounded = option.maximum is not None and option.maximum <= 1
    return (FloatSlider if bounded else FloatSpinBox)(**limits, **common)


def _snap(control: SpinBox, option: Option) -> None:
    """Make ``control`` take the nearest valid value of ``option`` after each edit."""
    native = control.native
    if hasattr(native, "setKeyboardTracking"):  # one change when typing ends, not per key
        native.setKeyboardTracking(False)

    def snap(value: Any) -> None:
        valid = option.nearest(value)
        if valid != value:
            control.value = valid

    control.changed.connect(snap)


def option_controls(group: Iterable[Option]) -> dict[str, Widget]:
    """``{name: control}`` for each option of a group, in order."""
    return {o.name: option_control(o) for o in group}


def option_values(controls: dict[str, Widget], group: Iterable[Option]) -> dict[str, Any]:
    """The controls' values as the options' kinds, ready for the engine."""
    return {o.name: o.kind(controls[o.name].value) for o in group}
