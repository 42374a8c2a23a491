"""Progress generators: the engine's long jobs yield progress and return their result.

``iter_denoise``, ``iter_seam_map`` and the tiler yield ``(done, total)`` and return their
result as the generator's return value, so one protocol serves scripts (:func:`drain`), the
CLI's progress bar (``drain(gen, on_progress=...)``), napari's ``thread_worker`` and longer
jobs built of several runs (:func:`relay`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def drain(gen: Generator[Any, None, T], on_progress: Callable[[Any], None] | None = None) -> T:
    """Run a progress generator to the end and return its return value.

    ``on_progress`` is called with each item it yields (e.g. ``(done, total)``).
    """
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(item)


def relay(gen: Generator[Any, None, T], to_step: Callable[[Any], Any]) -> Generator[Any, None, T]:
    """Re-yield a generator's progress items mapped by ``to_step``; return its return value.

    Lets a job made of several runs report one progress scale: ``yield from relay(run,
    lambda item: ...)``.
    """
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        yield to_step(item)
