"""Model and device choice shared by the denoise and tile widgets; models load in the worker."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit

from napari_astrodenoise._widgets._common import notify_info

#: the model choice that reads a model file from ``model_file``
FROM_FILE = "from file"
DEVICES = ("auto", "cpu", "cuda", "mps")
MODEL_TIP = (
    "The trained model that removes the noise: the shipped default suits most cameras; "
    "a model fine-tuned on your own frames is marked [yours]"
)
DEVICE_TIP = "Where the model runs: auto takes a GPU when there is one, else the CPU"
NO_MODEL_MESSAGE = (
    "No trained model ships with this installation yet: choose a model file "
    "(.safetensors with its .json) under 'Model file'."
)


#: every live picker, so that a newly fine-tuned model reaches them all
_PICKERS: weakref.WeakSet = weakref.WeakSet()


def _model_choices() -> list[tuple[str, str]]:
    """(label, name) of the shipped models (the default first, marked) and the user's."""
    from napari_astrodenoise.core.weights import available_models

    out = []
    for entry in available_models():
        label = f"{entry.name} (default)" if entry.default else entry.name
        out.append((label + (" [yours]" if entry.origin == "user" else ""), entry.name))
    return out


def announce_model(name: str) -> None:
    """A model was just saved: every picker lists it, and selects it."""
    for picker in list(_PICKERS):
        try:
            picker.refresh(select=name)
        except RuntimeError:  # its Qt widget was closed and deleted
            _PICKERS.discard(picker)


class ModelPicker(Container):
    """Model (the shipped default preselected, or a file) and device.

    With ``show_device=False`` the device control is not placed here: the panel puts
    ``picker.device`` where it wants it (the Denoise panel's Advanced section).

    `load` runs in a worker thread and keeps the last model loaded, so repeated runs
    with the same choice do not read the weights again.
    """

    def __init__(self, *, show_device: bool = True) -> None:
        choices = _model_choices()
        self.model = ComboBox(
            label="Model",
            choices=[*choices, (FROM_FILE, FROM_FILE)],
            tooltip=MODEL_TIP,
        )
        self.model_file = FileEdit(
            label="Model file",
            mode="r",
            filter="Model files (*.safetensors *.json)",
            tooltip="A model file you trained or were given: the .safetensors with its .json",
        )
        self.device = ComboBox(label="Device", choices=DEVICES, value="auto", tooltip=DEVICE_TIP)
        shown = [self.model, self.model_file] + ([self.device] if show_device else [])
        super().__init__(widgets=shown, labels=True)
        self.margins = (0, 0, 0, 0)
        self.model.changed.connect(self._show_file)
        self._show_file()
        self._cache: tuple[tuple, Any] | None = None
        self._lock = threading.Lock()
        _PICKERS.add(self)
        if not choices:
            notify_info(NO_MODEL_MESSAGE)

    def refresh(self, select: str | None = None) -> None:
        """List the models installed now; select ``select`` if given (else keep the choice)."""
        current = self.model.value
        self.model.choices = [*_model_choices(), (FROM_FILE, FROM_FILE)]
        wanted = select if select is not None else current
        if wanted in self.model.choices:
            self.model.value = wanted

    def _show_file(self, *_: Any) -> None:
        self.model_file.visible = self.model.value == FROM_FILE

    def spec(self) -> tuple[str, str]:
        """(model name or file path, device) as chosen; checked, nothing loaded.

        Raises
        ------
        ValueError
            When a model file is to be used but none (or a missing file) is chosen.
        """
        if self.model.value != FROM_FILE:
            return str(self.model.value), str(self.device.value)
        path = Path(self.model_file.value or "")
        if not str(self.model_file.value or "").strip() or not path.is_file():
            msg = (
                NO_MODEL_MESSAGE
                if not self.model.choices[:-1]
                else "choose a model file (.safetensors with its .json) under 'Model file'"
            )
            raise ValueError(msg)
        return str(path), str(self.device.value)

    def load(self, spec: tuple[str, str]) -> Any:
        """The `LoadedModel` for ``spec`` (from `spec`); call from a worker thread."""
        from napari_astrodenoise.core.weights import load_model

        path = Path(spec[0])
        key = (*spec, path.stat().st_mtime if path.is_file() else None)  # a rewritten file
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            loaded = load_model(spec[0], device=spec[1])
            self._cache = (key, loaded)
            return loaded
