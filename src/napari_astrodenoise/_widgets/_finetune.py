"""The Fine-tune widget: teach the model a camera's real noise from the user's own frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import napari
import napari.layers
import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    Select,
)

from napari_astrodenoise._widgets._common import (
    Panel,
    Task,
    engine_planes,
    shows_value_errors,
    unwrap,
)
from napari_astrodenoise._widgets._models import announce_model

#: shortest budget offered, minutes (a real fine-tune wants several)
MIN_MINUTES = 0.1


@dataclass
class _Curves:
    """Training and validation loss as they come, for the live plot."""

    train: list[tuple[int, float]] = field(default_factory=list)
    val: list[tuple[int, float]] = field(default_factory=list)

    def add(self, event: Any) -> bool:
        """Record a progress event; True when it added a point."""
        if event.val_loss is not None:
            self.val.append((event.step, event.val_loss))
            return True
        if event.stage == "train" and event.loss is not None:
            self.train.append((event.step, event.loss))
            return True
        return False


class LossPlot:
    """A small matplotlib canvas with the training and validation loss against the step."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.clear()

    def clear(self) -> None:
        ax = self.axes
        ax.clear()
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss (1: perfect)", fontsize=8)
        ax.tick_params(labelsize=7)
        self.canvas.draw_idle()

    def show(self, curves: _Curves) -> None:
        ax = self.axes
        ax.clear()
        if curves.train:
            ax.plot(*zip(*curves.train, strict=True), lw=1, color="tab:blue", label="training")
        if curves.val:
            ax.plot(
                *zip(*curves.val, strict=True), "o-", ms=3, color="tab:orange", label="validation"
            )
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss (1: perfect)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
        self.canvas.draw_idle()


class FinetuneWidget(Panel):
    """Fine-tune the model on two or more sub-exposures of one target (image layers or files).

    Each frame learns from another (Noise2Noise), so the model sees the camera's real
    noise; with one frame and "Single frame", a self-supervised loss (refused for
    correlated noise). The new model is saved in the user model directory and selected in
    the Denoise and Tile overlap widgets when it is ready. Cancel writes nothing.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.layers = self.add(
            Select(
                label="Frames",
                choices=self._image_layers,
                tooltip="Two or more raw sub-exposures of one target (Ctrl/Shift-click)",
            )
        )
        self.files = self.add(
            FileEdit(
                label="or files",
                mode="rm",
                filter="FITS files (*.fits *.fit *.fts)",
                tooltip="FITS sub-exposures to use instead of layers",
            )
        )
        self.name_edit = self.add(
            LineEdit(label="Name", value="my-camera", tooltip="Name of the new model")
        )
        self.minutes = self.add(
            FloatSpinBox(
                label="Minutes",
                min=MIN_MINUTES,
                max=240.0,
                step=1.0,
                value=10.0,
                tooltip="Time budget; training also stops when the validation loss stops "
                "improving",
            )
        )
        self.single = self.add(CheckBox(label="Single frame (no pair)", value=False))
        self.overwrite = self.add(CheckBox(label="Replace a model of that name", value=False))
        self.run_button = self.add(PushButton(text="Fine-tune"))
        self.cancel_button = self.add(PushButton(text="Cancel", enabled=False))
        self.status = self.add(Label(value=""))
        self.plot = LossPlot()
        self.inner.layout().addWidget(self.plot.canvas)
        self.curves = _Curves()
        self.result: Any = None
        self.task = Task(
            "Fine-tuning", returned=self._finished, state=self._running, yielded=self._event
        )
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.task.cancel)
        viewer.layers.events.inserted.connect(self.layers.reset_choices)
        viewer.layers.events.removed.connect(self.layers.reset_choices)

    def _image_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return [(la.name, la) for la in self._viewer.layers if isinstance(la, napari.layers.Image)]

    @property
    def busy(self) -> bool:
        """True while a fine-tune runs."""
        return self.task.running

    @shows_value_errors
    def run(self, *_: Any) -> None:
        """Start fine-tuning on the chosen frames (no-op while one runs)."""
        if self.task.running:
            return
        frames, bayer = self._frames()
        name = self.name_edit.value.strip()
        if not name:
            msg = "give the new model a name"
            raise ValueError(msg)
        options = {
            "name": name,
            "minutes": float(self.minutes.value),
            "single": bool(self.single.value),
            "overwrite": bool(self.overwrite.value),
            "bayer": bayer,
        }
        self.curves = _Curves()
        self.plot.clear()
        self.status.value = f"fine-tuning {name}..."

        def job():
            from napari_astrodenoise.finetune import iter_finetune

            return (yield from iter_finetune(frames, **options))

        self.task.start(job, description=f"Fine-tuning {name}")

    def _frames(self) -> tuple[list, bool | None]:
        """The frames (file paths or layer arrays) and whether they are Bayer mosaics."""
        files = [Path(p) for p in (self.files.value or ()) if str(p).strip() not in ("", ".")]
        if files:
            return [str(p) for p in files], None  # the FITS headers say (BAYERPAT)
        layers = [unwrap(la) for la in (self.layers.value or ())]
        wanted = 1 if self.single.value else 2
        if len(layers) < wanted:
            msg = (
                "choose one frame for a single-frame fine-tune"
                if self.single.value
                else "choose two or more frames of one target (or files)"
            )
            raise ValueError(msg)
        bayer = set()
        for layer in layers:
            planes = engine_planes(layer)
            if planes["channel_axis"] is not None:
                msg = (
                    f"'{layer.name}' is a colour image: fine-tuning takes raw mono or Bayer frames"
                )
                raise ValueError(msg)
            bayer.add(planes["bayer"])
        if len(bayer) > 1:
            msg = "the frames mix Bayer mosaics and mono frames"
            raise ValueError(msg)
        return [np.asarray(la.data) for la in layers], bayer.pop()

    def _event(self, event: Any) -> None:
        self.status.value = event.message
        if self.curves.add(event):
            self.plot.show(self.curves)

    def _running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if not running and self.status.value.startswith("fine-tuning"):
            self.status.value = ""

    def _finished(self, result: Any) -> None:
        self.result = result
        self.status.value = (
            f"{result.name}: validation loss {result.val_loss_before:.4f} -> "
            f"{result.val_loss_after:.4f} in {result.steps} steps; selected for denoising"
        )
        check = result.provenance.get("flux_lock_check")
        if check:  # measured on the frames (finetune.lockcheck): the whole line as a tooltip
            from napari_astrodenoise.finetune.lockcheck import verdict

            lock = check["flux_lock"]
            self.status.value += f"; flux lock {'off' if lock == 0 else f'{lock:g} px'}"
            self.status.tooltip = f"flux lock: {verdict(check)}"
        announce_model(result.name)
