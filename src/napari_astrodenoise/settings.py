"""The plugin's user settings (the automatic display stretch), kept in a small JSON file.

The file is ``settings.json`` in ``$ASTRODENOISE_CONFIG_DIR`` when that is set, otherwise in
``platformdirs.user_config_dir("napari-astrodenoise")``. A missing or unreadable file means
the defaults. No napari import: the reader reads these settings too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: environment variable that overrides the settings folder
CONFIG_ENV = "ASTRODENOISE_CONFIG_DIR"
DEFAULTS = {"auto_stretch": True}


def settings_path() -> Path:
    """Where the settings are kept (the file may not exist yet)."""
    override = os.environ.get(CONFIG_ENV, "").strip()
    if override:
        return Path(override).expanduser() / "settings.json"
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-astrodenoise")) / "settings.json"


def load_settings() -> dict:
    """Every setting: the saved value, or the default."""
    try:
        saved = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    return {key: saved.get(key, default) for key, default in DEFAULTS.items()}


def auto_stretch() -> bool:
    """Whether images opened or made by the plugin get the astro display stretch."""
    return bool(load_settings()["auto_stretch"])


def set_auto_stretch(enabled: bool) -> None:
    """Save whether images opened or made by the plugin get the astro display stretch."""
    settings = {**load_settings(), "auto_stretch": bool(enabled)}
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
