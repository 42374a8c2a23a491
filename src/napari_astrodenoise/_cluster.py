"""The dask.distributed side of :mod:`napari_astrodenoise.batch`: the worker plugin and task.

Kept apart so that importing :mod:`~napari_astrodenoise.batch` needs no ``distributed``
(the ``cluster`` extra) until a batch runs on a cluster.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from napari_astrodenoise.batch import PLUGIN_NAME, FileJob, denoise_file

if TYPE_CHECKING:
    from napari_astrodenoise.core.weights import LoadedModel


class ModelPlugin(WorkerPlugin):
    """A dask worker plugin: the model, loaded once on each worker, and its torch threads.

    Registered by :func:`~napari_astrodenoise.batch.denoise_files`
    (``client.register_plugin``); tasks find it as
    ``distributed.get_worker().plugins[PLUGIN_NAME]``.

    Parameters
    ----------
    model : str or path-like
        A registry name or a model file the workers can read.
    device : str
        Where the workers run it (``"auto"``, ``"cpu"``, ``"cuda"``).
    threads : int, optional
        torch threads per worker (its cores over its workers); torch's default when None.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, model: str, device: str = "auto", threads: int | None = None) -> None:
        self.model, self.device, self.threads = model, device, threads
        self.loaded: LoadedModel | None = None
        self.loads = 0

    def setup(self, worker: Any = None) -> None:
        """Load the model on the worker (once), with the worker's torch threads."""
        import torch

        from napari_astrodenoise.core.weights import load_model

        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.loaded = load_model(self.model, device=self.device)
        self.loads += 1

    def teardown(self, worker: Any = None) -> None:
        """Let the model go."""
        self.loaded = None


#: the shortest interval between two tile-progress events of one task, seconds
_EVENT_INTERVAL = 0.5


def on_worker(job: FileJob, topic: str | None = None, index: int = 0) -> dict[str, Any]:
    """A task: one job with the worker's model; where and how long it ran.

    With a ``topic``, the tiles done are sent to the client as events on it (at most one
    every half second, and the last one always): ``{"job": index, "done": d, "total": t}``.
    """
    import socket

    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins[PLUGIN_NAME]
    progress = None
    if topic is not None:
        sent = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - sent[0] >= _EVENT_INTERVAL:
                sent[0] = now
                worker.log_event(topic, {"job": index, "done": done, "total": total})

    start = time.perf_counter()
    denoise_file(job, plugin.loaded, progress=progress)
    return {
        "seconds": time.perf_counter() - start,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "loads": plugin.loads,
    }
