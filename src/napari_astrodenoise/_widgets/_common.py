"""Shared widget plumbing: layers in and out, astro contrast, notifications, background jobs."""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar, Widget, create_widget
from napari.layers import Image, Layer
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer

W = TypeVar("W", bound=Widget)

#: metadata key naming what a layer made by these widgets holds
ROLE = "astrodenoise_role"
_TRANSFORMS = ("scale", "translate", "rotate", "shear")


# ------------------------------------------------------------------------------ notifications


def notify_error(message: str) -> None:
    """Show an error notification in napari."""
    show_error(message)


def notify_info(message: str) -> None:
    """Show an information notification in napari."""
    show_info(message)


def notify_warning(message: str) -> None:
    """Show a warning notification in napari (the action goes on)."""
    show_warning(message)


def describe_error(exc: BaseException) -> str:
    """A message a user can act on for an exception from the engine."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (
            f"Out of memory ({text}). Try a smaller tile size, the 'cpu' device, "
            "or a smaller image; your layers are unchanged."
        )
    return text


def shows_value_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """A UI action whose ValueError (the user's choice cannot be used) is an error notification.

    The message is the engine's one line; nothing else happens and nothing is raised.
    """

    @functools.wraps(method)
    def action(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ValueError as err:
            notify_error(str(err))
            return None

    return action


class JobError(Exception):
    """An engine error re-raised so that the worker reports it (see `guarded`)."""


def guarded(gen: Generator) -> Generator:
    """Re-raise a RuntimeError of ``gen`` as `JobError`.

    superqt's GeneratorWorker takes a RuntimeError from the generator for a deleted Qt
    object and drops it silently (no ``errored``, no ``finished``); torch reports
    out-of-memory and many other failures as RuntimeError.
    """
    try:
        return (yield from gen)
    except RuntimeError as exc:
        raise JobError(describe_error(exc)) from exc


def _show_error(exc: BaseException) -> None:
    notify_error(describe_error(exc))


def _quiet(worker: Any) -> None:
    """Stop napari's generic error relay: the widgets show their own message."""
    relay = getattr(worker, "_relay_error", None)
    if relay is not None:
        try:
            worker.errored.disconnect(relay)
        except (TypeError, RuntimeError):  # not connected
            pass


# ------------------------------------------------------------------------------ layers


def unwrap(obj: Any) -> Any:
    """The napari object behind a plugin proxy (identity checks, weak references)."""
    return getattr(obj, "__wrapped__", obj)


def find_layer(viewer: Any, name: str) -> Layer | None:
    """The layer called ``name``, or None."""
    for layer in viewer.layers:
        if layer.name == name:
            return unwrap(layer)
    return None


def in_viewer(viewer: Any, layer: Any) -> bool:
    """Whether ``layer`` (a layer or a weak reference to one) is still in the viewer.

    Results of a background job are written only while their input is there: a layer
    removed meanwhile (or a viewer being closed) drops them.
    """
    if isinstance(layer, weakref.ref):
        layer = layer()
    layer = unwrap(layer)
    return layer is not None and any(unwrap(x) is layer for x in viewer.layers)


def channel_axis(layer: Any) -> int | None:
    """Channel axis of an image layer's data for the engine.

    None for mono (H, W), -1 for colour (H, W, 3) shown as rgb, 0 for a stack (N, H, W).

    Raises
    ------
    ValueError
        For anything but a single-scale 2-D image, colour image or (N, H, W) stack.
    """
    if layer is None:
        msg = "choose an image layer first"
        raise ValueError(msg)
    if not isinstance(layer, Image):
        msg = f"'{layer.name}' is a {type(layer).__name__} layer; choose an image layer"
        raise ValueError(msg)
    if layer.multiscale:
        msg = (
            f"'{layer.name}' is a multiscale mosaic, larger than the panels work on in "
            "memory: denoise its file with `astrodenoise denoise FILE --memory 2GB`, or in "
            "Python denoise(read_fits(path, lazy=True)[0].data), a row block at a time"
        )
        raise ValueError(msg)
    ndim = np.ndim(layer.data)
    if layer.rgb:
        return -1
    if ndim in (2, 3):
        return None if ndim == 2 else 0
    msg = (
        f"'{layer.name}' has shape {layer.data.shape}; only 2-D images, colour images "
        "and (N, H, W) stacks can be processed"
    )
    raise ValueError(msg)


def engine_planes(layer: Any) -> dict[str, Any]:
    """``channel_axis`` and ``bayer`` for the engine (see `channel_axis`).

    A mono layer whose metadata name a Bayer pattern (a raw one-shot-colour frame from the
    FITS reader) is denoised as its four colour sub-planes. A stack of such frames is
    refused: its planes would be denoised as mono, mixing pixels behind different filters.
    """
    axis = channel_axis(layer)
    raw = bool(layer.metadata.get("bayer_pattern"))
    if raw and axis is not None:
        msg = (
            f"'{layer.name}' is a stack of raw Bayer frames; denoise the frames one by one "
            "(open them without stacking) so that each is split into its colour sub-planes"
        )
        raise ValueError(msg)
    return {"channel_axis": axis, "bayer": raw}


def image_hw(layer: Image) -> tuple[int, int]:
    """(H, W) of an image layer: its last two spatial axes."""
    shape = layer.data.shape
    return tuple(shape[-3:-1] if layer.rgb else shape[-2:])


def world_matrix(layer: Layer) -> np.ndarray:
    """(D + 1, D + 1) homogeneous data-to-world matrix of a layer (D spatial axes)."""
    from napari.utils.transforms import CompositeAffine

    inner = CompositeAffine(
        scale=layer.scale,
        translate=layer.translate,
        rotate=layer.rotate,
        shear=layer.shear,
        ndim=layer.ndim,
    )
    return np.asarray(layer.affine.affine_matrix) @ inner.affine_matrix


def placement(layer: Layer, ndim: int | None = None) -> dict[str, Any]:
    """Transform keywords that draw a new layer exactly over ``layer``.

    Parameters
    ----------
    layer : Layer
        The layer to match (e.g. a FITS image flipped by the reader).
    ndim : int, optional
        Spatial axes of the new layer when fewer than ``layer``'s: the new layer matches
        ``layer``'s last ``ndim`` axes (a 2-D mask over an (N, H, W) stack).

    Returns
    -------
    dict
        ``scale``, ``translate``, ``rotate``, ``shear`` and ``affine`` copied from ``layer``,
        or one ``affine`` holding the matching block of its data-to-world matrix.
    """
    if ndim is None or ndim == layer.ndim:
        out = {name: np.array(getattr(layer, name)) for name in _TRANSFORMS}
        out["affine"] = np.array(layer.affine.affine_matrix)
        return out
    keep = [*range(layer.ndim - ndim, layer.ndim), layer.ndim]
    return {"affine": world_matrix(layer)[np.ix_(keep, keep)]}


def _same_kind(layer: Layer | None, data: np.ndarray, rgb: bool) -> bool:
    return (
        isinstance(layer, Image)
        and not layer.multiscale
        and layer.rgb == rgb
        and np.ndim(layer.data) == np.ndim(data)
    )


def upsert_image(
    viewer: Any,
    name: str,
    data: np.ndarray,
    *,
    place: dict[str, Any],
    metadata: dict,
    rgb: bool = False,
    **display: Any,
) -> tuple[Image, bool]:
    """Put ``data`` in the image layer ``name``: updated in place, added if missing.

    A layer of that name that cannot take the data (another layer type, rgb or not, another
    number of axes) is replaced at the same place in the layer list. ``display`` keywords
    (colormap, blending, ...) apply to a new layer only; the user's settings of an existing
    one are kept.

    Returns
    -------
    (Image, bool)
        The layer and whether it was created.
    """
    existing = find_layer(viewer, name)
    if _same_kind(existing, data, rgb):
        existing.data = data
        existing.metadata = metadata
        for key, value in place.items():
            setattr(existing, key, value)
        return existing, False
    index = None
    if existing is not None:
        index = list(viewer.layers).index(existing)
        viewer.layers.remove(existing)
    layer = unwrap(
        viewer.add_image(data, name=name, metadata=metadata, rgb=rgb, **place, **display)
    )
    if index is not None:
        viewer.layers.move(list(viewer.layers).index(layer), index)
    return layer, True


# ------------------------------------------------------------------------------ contrast


def astro_stretch(layer: Image) -> bool:
    """Show an image layer with the astro auto-stretch; its data are not touched.

    Contrast limits and gamma from :func:`napari_astrodenoise.core.display.display_stretch`
    (colour channels linked). A constant or empty image keeps its display.

    Returns
    -------
    bool
        Whether the display was changed.
    """
    from napari_astrodenoise.core.display import display_stretch

    stretch = display_stretch(np.asarray(layer.data), channel_axis=-1 if layer.rgb else None)
    if stretch is None:
        return False
    layer.contrast_limits = stretch.contrast_limits
    layer.gamma = stretch.gamma
    return True


def auto_stretch(layer: Image) -> None:
    """`astro_stretch` the layer unless the automatic stretch is switched off (settings)."""
    from napari_astrodenoise.settings import auto_stretch as enabled

    if enabled():
        astro_stretch(layer)


def share_display(source: Image, target: Image) -> None:
    """Show ``target`` through ``source``'s contrast limits and gamma (an honest comparison)."""
    target.contrast_limits = tuple(source.contrast_limits)
    target.gamma = float(source.gamma)


def signed_limits(data: Any) -> tuple[float, float]:
    """Symmetric limits for a difference image: +-99.5th percentile of |finite values|."""
    array = np.asarray(data)
    step = max(1, int(np.ceil(np.sqrt(array.size / (1 << 18)))))
    sample = np.abs(array[..., ::step, ::step])
    sample = sample[np.isfinite(sample)]
    top = float(np.percentile(sample, 99.5)) if sample.size else 0.0
    if not top > 0:
        top = float(sample.max()) if sample.size and sample.max() > 0 else 1.0
    return -top, top


def signed_colormap() -> Any:
    """Green (negative), black (zero), magenta (positive): a difference map that can be
    overlaid additively, zero adding nothing."""
    from napari.utils.colormaps import Colormap

    colors = [[0.1, 0.9, 0.3, 1.0], [0.0, 0.0, 0.0, 1.0], [0.95, 0.2, 0.85, 1.0]]
    return Colormap(colors, name="astrodenoise signed", controls=[0.0, 0.5, 1.0])


def set_signed_contrast(layer: Image) -> None:
    """Centred display of a difference layer (residual, seam map); gamma 1."""
    layer.contrast_limits = signed_limits(layer.data)
    layer.gamma = 1.0


# ------------------------------------------------------------------------------ panels


class Panel(Container):
    """A widget container filled in display order: ``self.run = self.add(PushButton(...))``.

    Each control is placed where it is made, so a panel's layout is read top to bottom in
    its ``__init__`` and never listed twice. A panel scrolls when the dock area is shorter
    than it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"scrollable": True, **kwargs})
        # rows keep their own height in a tall dock; the space left goes below the last one
        # (magicgui inserts each new row before this stretch)
        self.inner.layout().addStretch(1)

    @property
    def native(self) -> Any:
        """The outermost Qt widget, the scroll area: what napari puts in its dock."""
        return self.root_native_widget

    @property
    def inner(self) -> Any:
        """The Qt widget inside the scroll area, which holds the layout."""
        return Container.native.fget(self)

    def add(self, widget: W) -> W:
        """Append ``widget`` below the others and return it."""
        self.append(widget)
        return widget

    def add_layer_choice(self, label: str, kind: type = Image, *, optional: bool = False) -> Any:
        """Append a chooser of the viewer's layers of ``kind`` (with "none" if optional)."""
        if optional:
            return self.add(create_widget(label=label, annotation=kind | None, value=None))
        return self.add(create_widget(label=label, annotation=kind))


# ------------------------------------------------------------------------------ jobs


class Debouncer:
    """Call ``callback`` once, ``delay_ms`` after the last of a burst of triggers."""

    def __init__(self, delay_ms: int, callback: Callable[[], None], parent: Any = None) -> None:
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(callback)

    def __call__(self, *_: Any) -> None:
        self._timer.start()

    @property
    def pending(self) -> bool:
        """True between a trigger and the call."""
        return self._timer.isActive()


@dataclass(eq=False)
class LatestRunner:
    """Run ``func(*args)`` in a thread; while it runs keep only the newest request.

    For previews and re-blends: a burst of slider moves costs at most one run in flight
    and one waiting, and the UI thread only receives the results (``on_result``).
    """

    _func: Callable[..., Any]
    _on_result: Callable[[Any], None]
    _worker: Any = None
    _pending: tuple | None = None

    @property
    def busy(self) -> bool:
        """True while a run is in flight or waiting."""
        return self._worker is not None or self._pending is not None

    def request(self, *args: Any) -> None:
        """Run with ``args`` now, or after the run in flight (replacing any waiting one)."""
        if self._worker is not None:
            self._pending = args
            return
        self._start(args)

    def _start(self, args: tuple) -> None:
        func = self._func

        def job():
            try:
                return func(*args)
            except RuntimeError as exc:
                raise JobError(describe_error(exc)) from exc

        worker = thread_worker(job, start_thread=False, connect={"errored": _show_error})()
        _quiet(worker)
        worker.returned.connect(self._on_result)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._pending is not None:
            args, self._pending = self._pending, None
            self._start(args)


def time_left(seconds: float) -> str:
    """A duration in words for a progress line: "about 40 s", "about 3 min"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"


class ProgressLine(Container):
    """A progress bar and a line under it: "12 / 36 tiles, about 20 s left".

    Hidden until a job starts; the time left is the elapsed time per unit done, times the
    units still to do.
    """

    def __init__(self, unit: str = "tiles") -> None:
        self.bar = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.text = Label(value="")
        super().__init__(widgets=[self.bar, self.text], labels=False)
        self.margins = (0, 0, 0, 0)
        self.unit = unit
        self._started = 0.0
        self.visible = False

    def start(self) -> None:
        """Show an empty bar and start the clock."""
        self._started = time.monotonic()
        self.bar.max, self.bar.value = 1, 0
        self.text.value = "starting..."
        self.visible = True

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` units and the time left."""
        self.bar.max = max(1, int(total))
        self.bar.value = min(int(done), self.bar.max)
        text = f"{done} / {total} {self.unit}" if self.unit else f"{100 * done // total} %"
        if 0 < done < total:
            elapsed = time.monotonic() - self._started
            text += f", {time_left(elapsed / done * (total - done))} left"
        self.text.value = text

    def stop(self) -> None:
        """Hide the bar: the job is over."""
        self.visible = False


class Task:
    """One long job at a time in a napari thread_worker, with a progress bar and Cancel.

    The job is a generator yielding ``(done, total)`` (e.g. ``iter_denoise``) or records
    with a ``fraction`` from 0 to 1 (``iter_finetune``), each also passed to ``yielded`` in
    the UI thread; `cancel` quits the worker at its next yield. Errors and cancellation
    become notifications; ``returned`` gets the generator's return value.
    """

    def __init__(
        self,
        name: str,
        *,
        returned: Callable[[Any], None],
        state: Callable[[bool], None] = lambda running: None,
        yielded: Callable[[Any], None] | None = None,
        line: ProgressLine | None = None,
    ) -> None:
        self.name = name
        self.line = line
        self._returned = returned
        self._state = state
        self._yielded = yielded
        self._worker: Any = None
        self._bar: progress | None = None

    @property
    def running(self) -> bool:
        """True from `start` until the worker has finished."""
        return self._worker is not None

    def start(self, job: Callable[[], Generator], description: str) -> None:
        """Run ``job()`` (a generator function) in a thread."""
        if self.running:
            notify_info(f"{self.name} is already running; cancel it first")
            return

        def run():
            return (yield from guarded(job()))

        # an ``errored`` handler given here stops superqt re-raising in the main thread
        worker = thread_worker(run, start_thread=False, connect={"errored": self._errored})()
        _quiet(worker)
        self._bar = progress(total=0, desc=description)
        worker.yielded.connect(self._progress)
        worker.returned.connect(self._returned)
        worker.aborted.connect(self._aborted)
        worker.finished.connect(self._finished)
        self._worker = worker
        if self.line is not None:
            self.line.start()
        self._state(True)
        worker.start()

    def cancel(self) -> None:
        """Ask the worker to stop at its next yield (between batches)."""
        if self._worker is not None:
            self._worker.quit()

    def _progress(self, value: Any) -> None:
        if self._yielded is not None:
            self._yielded(value)
        if hasattr(value, "fraction"):
            value = (round(1000 * value.fraction), 1000)
        if self._bar is None or not isinstance(value, tuple):
            return
        done, total = value
        if self.line is not None:
            self.line.update(done, total)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def _errored(self, exc: BaseException) -> None:
        notify_error(f"{self.name} failed: {describe_error(exc)}")

    def _aborted(self) -> None:
        notify_info(f"{self.name} cancelled; no layer was changed")

    def _finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.line is not None:
            self.line.stop()
        self._worker = None
        self._state(False)
