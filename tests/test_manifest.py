"""The npe2 manifest: one file at the top, carried unchanged by the installed package."""

from __future__ import annotations

import importlib
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

TOP_LEVEL = Path(__file__).resolve().parents[1] / "napari.yaml"


def test_installed_manifest_is_the_top_level_file():
    shipped = (files("napari_astrodenoise") / "napari.yaml").read_text()
    assert shipped == TOP_LEVEL.read_text()


def test_every_python_name_imports():
    manifest = yaml.safe_load(TOP_LEVEL.read_text())
    commands = manifest["contributions"]["commands"]
    assert commands
    for command in commands:
        module, _, attr = command["python_name"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command["python_name"]


def test_npe2_validates_the_installed_plugin():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-astrodenoise")
    assert manifest.display_name == "Astro Denoise"
    assert manifest.display_name[-1] not in ".!?,;:"  # napari skips such plugins
    manifest.validate_imports()


def test_display_names_do_not_end_in_punctuation():
    manifest = yaml.safe_load(TOP_LEVEL.read_text())
    names = [manifest["display_name"]]
    for group in ("writers", "sample_data", "widgets"):
        names += [c["display_name"] for c in manifest["contributions"].get(group, [])]
    assert all(name[-1].isalnum() for name in names), names
