"""Files in, files out: one file's denoising job, and batches of them on a dask cluster.

:func:`denoise_file` is one file's whole job: read (lazily for FITS), denoise in memory or,
beyond its memory budget, a row block at a time (:class:`~.core.outofcore.OutOfCoreRun`)
streamed into FITS, and write with provenance, atomically. Its output records the input
file's sha256 (``ADINSHA``) and a digest of the model and settings (``ADSETSHA``), so that
a batch run again with ``resume`` skips what is done (:func:`is_done`).

:func:`denoise_files` runs many jobs on a ``distributed.Client`` (a ``LocalCluster`` of
processes, or any cluster the client reaches): each worker loads the model once (a worker
plugin, :class:`~._cluster.ModelPlugin`), a file that fails is reported and the others go
on. A night of frames::

    from distributed import Client, LocalCluster
    from napari_astrodenoise.batch import FileJob, denoise_files

    with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as client:
        jobs = [FileJob(str(p), f"out/{p.stem}_denoised.fits") for p in night]
        outcomes = denoise_files(client, jobs, model="default", threads=2)
    failed = [o for o in outcomes if o.status == "failed"]

The command line does the same with ``astrodenoise denoise FILES... --output-dir out
--workers 4`` (or ``--scheduler tcp://host:8786``, and ``--resume``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_astrodenoise.core.options import DENOISE
from napari_astrodenoise.core.weights import own_options

if TYPE_CHECKING:
    from napari_astrodenoise.core.weights import LoadedModel
    from napari_astrodenoise.fits_io import FitsImage

Progress = Callable[[int, int], None]

#: float32 copies of a frame that an in-memory run holds at its peak
IN_MEMORY_COPIES = 10
#: the name of the worker plugin that holds the model on each worker
PLUGIN_NAME = "astrodenoise-model"


@dataclass(frozen=True)
class FileJob:
    """One file to denoise: where from, where to, and how.

    Attributes
    ----------
    input : str
        The image file (FITS, XISF or TIFF), or a bundled sample's name with ``sample``.
    output : str
        The file to write; its format is ``file_format``.
    file_format : str
        ``"fits"``, ``"xisf"`` or ``"tiff"``.
    hdu : int or None
        The image HDU to read (the first image HDU when None).
    sample : bool
        ``input`` names a bundled sample (``"m13"``, ``"synthetic"``).
    options : mapping
        Denoising options (:data:`~.core.options.DENOISE`); their defaults where missing.
    batch_size : int or None
        Tiles per network call.
    memory : int or None
        Bytes the job may use; beyond it the frame is denoised a row block at a time
        (half the machine's memory when None).
    overwrite : bool
        Replace an existing output.
    compress : bool
        XISF output: zlib with byte shuffling.
    tiff_bits : int
        TIFF output: 32 (float) or 16.
    """

    input: str
    output: str
    file_format: str = "fits"
    hdu: int | None = None
    sample: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    memory: int | None = None
    overwrite: bool = False
    compress: bool = False
    tiff_bits: int = 32

    def settings(self, own: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option, the HDU and the output's form.

        An option the job does not set is the model's own (``own``, from
        :func:`~napari_astrodenoise.core.weights.own_options`) or else its default: what the
        engine runs with.
        """
        own = own or {}
        options = {o.name: self.options.get(o.name, own.get(o.name, o.default)) for o in DENOISE}
        return {
            "options": options,
            "hdu": self.hdu,
            "format": self.file_format,
            "compress": self.compress,
            "tiff_bits": self.tiff_bits,
        }

    def digest(self, model_sha256: str, own: Mapping[str, Any] | None = None) -> str:
        """sha256 of the model's sha256 and :meth:`settings` (the output's ``ADSETSHA``)."""
        text = json.dumps({"model": model_sha256, **self.settings(own)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FileOutcome:
    """What became of one job: ``status`` ``"done"``, ``"skipped"`` (resume) or ``"failed"``.

    ``reason`` says why a job failed (one line); ``seconds`` is its time on the worker;
    ``worker`` the process that ran it (``host:pid``).
    """

    job: FileJob
    status: str
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read 8 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_done(job: FileJob, model_sha256: str, own: Mapping[str, Any] | None = None) -> bool:
    """Whether ``job.output`` exists with the provenance this job would give it.

    ``own`` are the model's own options (see :meth:`FileJob.settings`).

    The same input bytes (``ADINSHA``), the same model and settings (``ADSETSHA``); an
    output that cannot be read, or lacks these cards, is not done.
    """
    from napari_astrodenoise.fits_io import ImageReadError
    from napari_astrodenoise.image_io import read_image

    if job.sample or not Path(job.output).is_file():
        return False
    try:
        header = read_image(job.output, lazy=True)[0].header
    except (ImageReadError, OSError):
        return False
    return header.get("ADSETSHA") == job.digest(model_sha256, own) and header.get(
        "ADINSHA"
    ) == file_sha256(job.input)


# --------------------------------------------------------------------------- one file
def image_of(job: FileJob) -> FitsImage:
    """The job's image, read lazily where it can be (uncompressed FITS); checked for its format."""
    from napari_astrodenoise.image_io import read_image

    if job.sample:
        from napari_astrodenoise._sample_data import sample_image

        image = sample_image(job.input)
    else:
        images = read_image(job.input, lazy=True)
        chosen = [im for im in images if job.hdu is None or im.hdu_index == job.hdu]
        if not chosen:
            found = [im.hdu_index for im in images]
            msg = f"{job.input}: HDU {job.hdu} is not an image HDU with data (image HDUs: {found})"
            raise ValueError(msg)
        image = chosen[0]
    check_format(image, job.file_format)
    return image


def check_format(image: FitsImage, chosen: str) -> None:
    """Refuse, before its run, an image the chosen output format cannot hold."""
    if chosen != "fits" and image.kind == "stack":
        msg = (
            f"{image.name} is a stack of {image.data.shape[0]} planes; {chosen} holds mono "
            "or RGB images: write it as FITS (--format fits)"
        )
        raise ValueError(msg)


def machine_memory() -> int:
    """The default memory budget of a job: half of the machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def too_big(image: FitsImage, memory: int) -> bool:
    """Whether an in-memory run of ``image`` would pass ``memory`` bytes."""
    from napari_astrodenoise.core.outofcore import BASE_BYTES

    return BASE_BYTES + IN_MEMORY_COPIES * 4 * image.data.size > memory


def denoise_file(
    job: FileJob,
    model: str | os.PathLike | LoadedModel,
    *,
    device: str = "auto",
    progress: Progress | None = None,
) -> int:
    """Denoise one file and write its output (atomic); the number of row blocks used.

    In memory (0 blocks), or, when that would pass ``job.memory``, a row block at a time
    into a FITS output (the blocks' count). ``progress(done, total)`` follows the tiles
    (and statistics passes and blocks, out of core).

    Raises
    ------
    ValueError, OSError
        With the reason in one line (a file that cannot be read, an output that exists).
    """
    from napari_astrodenoise.core.predictor import as_loaded

    loaded = as_loaded(model, device)
    image = image_of(job)
    memory = machine_memory() if job.memory is None else job.memory
    sha = None if job.sample else file_sha256(job.input)
    cards = {"ADSETSHA": (job.digest(loaded.sha256, own_options(loaded.config)), "")}
    if sha is not None:
        cards["ADINSHA"] = (sha, "")
    if too_big(image, memory):
        return _streamed(job, image, loaded, memory, cards, progress)
    _in_memory(job, image, loaded, cards, progress)
    return 0


def in_memory(image: FitsImage) -> Any:
    """The image's data as a numpy array; a lazy FITS image read whole here, in one copy."""
    import numpy as np

    if image.lazy_rows is not None:
        return image.lazy_rows[(slice(None),) * image.data.ndim]
    return np.asarray(image.data)


def _options(job: FileJob) -> dict[str, Any]:
    """The options the job sets; the engine fills the rest from the model's and the table's."""
    return dict(job.options)


def _channel_axis(image: FitsImage) -> int | None:
    return None if image.data.ndim == 2 else 0


def _in_memory(
    job: FileJob,
    image: FitsImage,
    loaded: LoadedModel,
    cards: dict,
    progress: Progress | None,
) -> None:

    from napari_astrodenoise.core.pipeline import iter_denoise
    from napari_astrodenoise.core.progress import drain
    from napari_astrodenoise.image_io import write_image

    gen = iter_denoise(
        in_memory(image),
        model=loaded,
        channel_axis=_channel_axis(image),
        bayer=image.bayer_pattern is not None,
        batch_size=job.batch_size,
        model_mask=False,  # the file holds the image alone: one plane less in memory
        **_options(job),
    )
    result = drain(gen, on_progress=None if progress is None else lambda item: progress(*item))
    meta = result.provenance()
    output = result.take_output()  # over the prediction: no new frame
    del result, gen
    with _writing(job.output):
        write_image(
            Path(job.output),
            output,
            overwrite=job.overwrite,
            header=image.header,
            channel_axis=_channel_axis(image),
            provenance={**meta["provenance"], **cards},
            history=[*meta["history"], f"input: {job.input}"],
            file_format=job.file_format,
            format_info=image.format_info,
            compress=job.compress,
            bits=job.tiff_bits,
        )


def _streamed(
    job: FileJob,
    image: FitsImage,
    loaded: LoadedModel,
    memory: int,
    cards: dict,
    progress: Progress | None,
) -> int:
    """Denoise a frame beyond ``memory`` a row block at a time, into a FITS file."""
    from napari_astrodenoise.core.outofcore import OutOfCoreRun, is_dask_array
    from napari_astrodenoise.core.provenance import provenance
    from napari_astrodenoise.fits_write import write_fits_blocks

    out = Path(job.output)
    size = f"{image.data.nbytes / 2**30:.1f} GiB"
    if job.file_format != "fits" or out.name.lower().endswith((".gz", ".fz")):
        msg = (
            f"{job.input}: a frame of {size} is beyond the memory budget and is written a "
            "block at a time, to plain FITS only: use --format fits (or raise --memory)"
        )
        raise ValueError(msg)
    if image.bayer_pattern is not None:
        msg = f"{job.input}: a raw Bayer mosaic is denoised in memory: raise --memory above {size}"
        raise ValueError(msg)
    data = image.data
    if not is_dask_array(data):  # read eagerly (compressed): denoised out of core all the same
        import dask.array as da

        data = da.from_array(data, chunks=(*data.shape[:-2], 1024, data.shape[-1]))
    channel_axis = _channel_axis(image)
    run = OutOfCoreRun(
        data,
        model=loaded,
        channel_axis=channel_axis,
        batch_size=job.batch_size,
        memory=memory,
        spill_dir=out.parent,
        **_options(job),
    )
    blocks = len(run.blocks)
    try:
        total = 0
        for done, total in run.iter_prepare():
            if progress is not None:
                progress(done, total + blocks)

        def rows_done() -> Any:
            for i, rows in enumerate(run.blocks):
                yield rows, run.block(i)
                if progress is not None:
                    progress(total + i + 1, total + blocks)

        meta = provenance(run.settings)
        with _writing(job.output):
            write_fits_blocks(
                out,
                rows_done(),
                data.shape,
                header=image.header,
                channel_axis=channel_axis,
                provenance={**meta["provenance"], **cards},
                history=[
                    *meta["history"],
                    f"input: {job.input}",
                    f"denoised in {blocks} row blocks",
                ],
                overwrite=job.overwrite,
            )
    finally:
        run.close()
    return blocks


@contextlib.contextmanager
def _writing(out: str) -> Iterator[None]:
    """An OS error of a write said with the output's name, in one line (nothing is left)."""
    from napari_astrodenoise._preflight import os_reason

    try:
        yield
    except FileExistsError:
        raise
    except OSError as err:
        msg = f"cannot write {out}: {os_reason(err, name=False)}; nothing written"
        raise OSError(err.errno, msg) from None


# --------------------------------------------------------------------------- a cluster
def _model_spec(model: str | os.PathLike | LoadedModel) -> str:
    """What workers load: a registry name or a model file's path."""
    path = getattr(model, "path", None)
    return str(path if path is not None else model)


def denoise_files(
    client: Any,
    jobs: Sequence[FileJob],
    model: str | os.PathLike | LoadedModel = "default",
    *,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: Callable[[int, int, FileOutcome], None] | None = None,
    tiles: Callable[[int, int], None] | None = None,
) -> list[FileOutcome]:
    """Denoise files on a dask.distributed cluster; a file that fails does not stop the rest.

    Parameters
    ----------
    client : distributed.Client
        The cluster's client (a ``LocalCluster`` of processes, or a remote scheduler: then
        inputs, outputs and a model file must be at the same paths on the workers).
    jobs : sequence of FileJob
        One per file; outputs must differ.
    model : str, path-like or LoadedModel, optional
        Loaded once on each worker (:class:`ModelPlugin`).
    device : str, optional
        The workers' device.
    threads : int, optional
        torch threads per worker (cores over workers on one machine).
    resume : bool, optional
        Skip jobs whose output exists with this input's sha256 and these settings
        (:func:`is_done`, checked here, on the client).
    progress : callable, optional
        ``progress(files_done, files_total, outcome)`` as each file ends.
    tiles : callable, optional
        ``tiles(done, total)``: the tiles done on the workers, over the files started so
        far (out of core, statistics passes and blocks count too), as the workers report
        them (events on a topic of this run, about twice a second per file). Called from
        the client's event loop.

    Returns
    -------
    list of FileOutcome
        In the order of ``jobs``.
    """
    from distributed import as_completed

    from napari_astrodenoise._cluster import ModelPlugin, on_worker
    from napari_astrodenoise.core.predictor import as_loaded

    spec = _model_spec(model)
    loaded = as_loaded(model, "cpu") if resume else None
    sha, own = (loaded.sha256, own_options(loaded.config)) if loaded else ("", {})
    outcomes: dict[int, FileOutcome] = {}
    todo = []
    for i, job in enumerate(jobs):
        if resume and is_done(job, sha, own):
            outcomes[i] = FileOutcome(job, "skipped", "its output is done")
        else:
            todo.append(i)
    total = len(jobs)
    for outcome in outcomes.values():
        if progress is not None:
            progress(len(outcomes), total, outcome)
    if todo:
        client.register_plugin(ModelPlugin(spec, device, threads), name=PLUGIN_NAME)
        topic = None
        if tiles is not None:
            topic = f"astrodenoise-tiles-{time.time_ns()}"
            counts: dict[int, tuple[int, int]] = {}

            def on_event(event: Any) -> None:
                msg = event[1]
                counts[msg["job"]] = (int(msg["done"]), int(msg["total"]))
                tiles(sum(d for d, _ in counts.values()), sum(t for _, t in counts.values()))

            client.subscribe_topic(topic, on_event)
        stamp = time.time_ns()
        futures = {
            client.submit(on_worker, jobs[i], topic, i, key=f"astrodenoise-{i}-{stamp}"): i
            for i in todo
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                outcomes[i] = _outcome(jobs[i], future)
                if progress is not None:
                    progress(len(outcomes), total, outcomes[i])
        finally:
            if topic is not None:
                client.unsubscribe_topic(topic)
    return [outcomes[i] for i in range(total)]


def _outcome(job: FileJob, future: Any) -> FileOutcome:
    if future.status == "finished":
        done = future.result()
        return FileOutcome(job, "done", seconds=done["seconds"], worker=done["worker"])
    try:
        error = future.exception()
        reason = " ".join(str(error).split()) or type(error).__name__
    except Exception as exc:  # the worker died, or the task was cancelled
        reason = f"{type(exc).__name__}: {exc}"
    return FileOutcome(job, "failed", reason)
