"""One check for every table of a training config file: unknown keys are an error naming them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def checked_table(table: Mapping[str, Any], section: str, cls: type) -> dict:
    """``table`` as a dict, after checking its keys are fields of the dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        msg = f"unknown [{section}] keys {unknown}; known keys are {sorted(known)}"
        raise ValueError(msg)
    return dict(table)
