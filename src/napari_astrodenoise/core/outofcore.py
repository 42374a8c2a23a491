"""Denoising a frame larger than memory: row blocks, the whole frame's tile grid and statistics.

:func:`denoise_lazy` (what :func:`~.pipeline.denoise` does with a dask array) runs the
engine's own stages a row block at a time, so that a mosaic of any height is denoised in
the memory of a few blocks, and the result equals the in-memory one:

1. **Statistics of the input**, in one pass over the blocks: the strided samples that the
   stretch, the noise level and the noise prefit read (:class:`~.noiselevel.SampledPlanes`),
   so they are the whole frame's, bit for bit.
2. **The network**, block by block, on the whole frame's tile grid
   (:func:`~.tiling.iter_tiled_rows`): the tiles over a block's rows, read with the rows
   they need, run in the whole frame's order, so the seams fall where they fall in memory.
   The stitched change goes to a temporary file beside the other temporaries (the change
   map is the one whole-frame array the safeguards need twice).
3. **Statistics of the change**: the safeguards' noise profile (and, as needed, the
   locked prediction's profile and each plane's brightest pixel for the star refit), from
   the same samples the in-memory run takes (:class:`~.safeguards.GuardStats`).
4. **The safeguards**, a block at a time, each block read with
   :func:`~.safeguards.guard_reach` rows each side (flux lock, star refit footprint, peak
   cap) and the shared statistics, then the strength blend.

Steps 1 to 3 run once, when the first block is asked for (:meth:`OutOfCoreRun.prepare`);
step 4 is the lazy dask array's blocks. The only difference from the in-memory result is
the network's own arithmetic on batches of another size (a few 1e-7 relative).
"""

from __future__ import annotations

import os
import tempfile
import threading
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_astrodenoise.core import tiling
from napari_astrodenoise.core.fluxlock import lock_block
from napari_astrodenoise.core.noiselevel import (
    SampledPlanes,
    fit_noise_profile,
    fit_noise_profile_of_change,
    noise_map,
)
from napari_astrodenoise.core.options import DENOISE, SAFEGUARDS, TILING, resolve
from napari_astrodenoise.core.planes import PlaneMap, is_dask_array
from napari_astrodenoise.core.predictor import as_loaded
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.safeguards import (
    GuardStats,
    guard_change,
    guard_needs,
    guard_profile,
    guard_reach,
)
from napari_astrodenoise.core.starrefit import REFIT_WINDOW, brightest_of
from napari_astrodenoise.core.weights import with_model_options

if TYPE_CHECKING:
    from napari_astrodenoise.core.weights import LoadedModel

#: bytes a run holds besides its blocks (the interpreter, torch, the model)
BASE_BYTES = 512 << 20
#: float32 copies of a block's planes (with its halo) that a run holds at once, at most
BLOCK_COPIES = 16
#: the memory budget when none is given
DEFAULT_MEMORY = 2 << 30
#: the fewest rows a block has, whatever the budget
MIN_BLOCK_ROWS = 64


def rows_for_memory(memory: int, channels: int, width: int) -> int:
    """Rows per block for a run to stay within ``memory`` bytes (>= `MIN_BLOCK_ROWS`)."""
    per_row = BLOCK_COPIES * channels * width * 4
    return max(MIN_BLOCK_ROWS, int((memory - BASE_BYTES) // max(1, per_row)))


class OutOfCoreRun:
    """One denoising run of a (dask) frame larger than memory, a row block at a time.

    Arguments are those of :func:`~.pipeline.iter_denoise` (``bayer`` excepted), checked
    here, before any work; the model is loaded here too.

    Parameters
    ----------
    image : dask.array.Array or ndarray
        Mono (H, W), or colour / a stack with ``channel_axis``; NaNs kept.
    block_rows : int, optional
        Rows per block; from ``memory`` when None.
    memory : int, optional
        Bytes the run may use (`DEFAULT_MEMORY` when None and ``block_rows`` is None too).
    spill_dir : path-like, optional
        Where the temporary change map goes (the system's temporary folder when None).
    **options
        The denoising options (:data:`~.options.DENOISE`).

    Attributes
    ----------
    blocks : list of slice
        The output's row blocks (rows of the image's planes).
    settings : dict
        The run's settings for provenance, complete once :meth:`prepare` has run.
    """

    def __init__(
        self,
        image: Any,
        *,
        model: str | os.PathLike | LoadedModel = "default",
        device: str = "auto",
        channel_axis: int | None = None,
        bayer: bool = False,
        batch_size: int | None = None,
        star_mask: Any = None,
        block_rows: int | None = None,
        memory: int | None = None,
        spill_dir: str | os.PathLike | None = None,
        **options: Any,
    ) -> None:
        from napari_astrodenoise.core.pipeline import check_batch_size

        self.loaded = as_loaded(model, device)
        self.options = resolve(with_model_options(options, self.loaded), DENOISE, caller="denoise")
        if bayer:
            msg = "a Bayer mosaic is denoised in memory: pass np.asarray(image) with bayer=True"
            raise ValueError(msg)
        check_batch_size(batch_size)
        self.plane_map = PlaneMap.of(image, channel_axis, False)
        if self.options["star_protection"] > 0 and star_mask is None:
            msg = (
                "star_protection on a frame larger than memory needs its star_mask "
                "(an (H, W) array): the star mask is not measured block by block"
            )
            raise ValueError(msg)
        if star_mask is not None and np.shape(star_mask) != self.plane_map.plane_shape:
            want, got = self.plane_map.plane_shape, np.shape(star_mask)
            msg = f"star_mask must have shape {want}, got {got}"
            raise ValueError(msg)
        self.image = image
        self.star_mask = star_mask
        self.channels = 1 if channel_axis is None else image.shape[channel_axis]
        self.height, self.width = self.plane_map.plane_shape
        self.batch_size = batch_size
        self.safeguards = {o.name: self.options[o.name] for o in SAFEGUARDS}
        self.tiling = {o.name: self.options[o.name] for o in TILING}
        self.layout = tiling.plan_tiles(
            (self.height, self.width),
            tile_size=self.tiling["tile_size"],
            overlap=self.tiling["overlap"],
            blend=self.tiling["blend"],
        )
        self.reach = guard_reach(refit_window=REFIT_WINDOW, **self.safeguards)
        self.align = lock_block(self.safeguards["flux_lock"], self.safeguards["lock_threshold"])
        if block_rows is None:
            memory = DEFAULT_MEMORY if memory is None else int(memory)
            block_rows = rows_for_memory(memory, self.channels, self.width)
            # a block shorter than a tile runs the tiles over it for little of their rows
            block_rows = max(block_rows, 2 * self.layout.tile_size)
        block_rows = int(max(1, min(block_rows, self.height)))
        self.blocks = [
            slice(y, min(y + block_rows, self.height)) for y in range(0, self.height, block_rows)
        ]
        self.settings: dict = {}
        self._spill_dir = spill_dir
        self._spill: str | None = None
        self._stats: GuardStats | None = None
        self._unit = 1.0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- reading and the spill
    def _read(self, rows: slice) -> np.ndarray:
        """(C, n, W) float32 planes of the image's ``rows``."""
        index: list[slice] = [slice(None)] * len(self.plane_map.shape)
        axis = self._row_axis()
        index[axis] = rows
        part = self.image[tuple(index)]
        if is_dask_array(part):
            part = part.compute(scheduler="sync")
        shape = list(self.plane_map.shape)
        shape[axis] = rows.stop - rows.start
        return PlaneMap(tuple(shape), self.plane_map.channel_axis).to_planes(np.asarray(part))

    def _row_axis(self) -> int:
        """The axis of the caller's array that holds the picture's rows."""
        axis = self.plane_map.channel_axis
        return 0 if axis is None or axis % 3 != 0 else 1

    def _spill_map(self, mode: str) -> np.memmap:
        shape = (self.channels, self.height, self.width)
        return np.memmap(self._spill, dtype=np.float32, mode=mode, shape=shape)

    def _new_spill(self) -> None:
        handle, path = tempfile.mkstemp(
            prefix=".astrodenoise-change-", suffix=".f32", dir=self._spill_dir
        )
        with os.fdopen(handle, "wb") as f:
            f.truncate(self.channels * self.height * self.width * 4)
        self._spill = path
        self._finalizer = weakref.finalize(self, _remove, path)

    def close(self) -> None:
        """Remove the temporary change map now (it goes with the run otherwise)."""
        if self._spill is not None:
            self._finalizer()

    def _work(self, chw: np.ndarray) -> np.ndarray:
        return chw if self._unit == 1.0 else chw * np.float32(1.0 / self._unit)

    # ----------------------------------------------------------------- the passes
    def prepare(self) -> GuardStats:
        """Run steps 1 to 3 (statistics, network, statistics of the change) once."""
        with self._lock:
            if self._stats is None:
                drain(self._iter_prepare())
            return self._stats

    def iter_prepare(self) -> Generator[tuple[int, int], None, GuardStats]:
        """:meth:`prepare`, yielding progress ``(steps_done, steps_total)``.

        A step is one tile of the network or one block of a statistics pass.
        """
        with self._lock:
            if self._stats is None:
                yield from self._iter_prepare()
            return self._stats

    def _iter_prepare(self) -> Generator[tuple[int, int], None, None]:
        from napari_astrodenoise.core.pipeline import (
            _fill_values,
            frame_statistics,
            make_predictor,
            run_settings,
        )

        noise_channel = bool(self.loaded.module.config.noise_channel)
        needs = guard_needs(**self.safeguards)
        tiles = [len(tiling.origins_over(self.layout, rows)) for rows in self.blocks]
        passes = 1 + sum(need in needs for need in ("locked", "brightest"))
        total = len(self.blocks) * passes + sum(tiles)
        # 1. the input's statistics, one pass over the blocks
        samples = SampledPlanes((self.channels, self.height, self.width), curvature=noise_channel)
        for i, rows in enumerate(self.blocks):
            samples.add(self._read(rows), rows.start)
            yield i + 1, total
        done = len(self.blocks)
        stretch, self._unit, work_samples, prefit = frame_statistics(samples, self.loaded)
        predictor = make_predictor(
            self.loaded,
            stretch,
            self.channels,
            self.batch_size,
            self.options["ensemble"],
            self.options["precision"],
        )
        settings = run_settings(self.loaded, stretch, self._unit, prefit, bayer=False)
        # 2. the network, block by block, its change to the spill
        self._new_spill()
        change_samples = SampledPlanes(samples.shape, curvature=False)
        fill = _fill_values(stretch.background, self.channels + (prefit is not None))
        for rows, n_tiles in zip(self.blocks, tiles, strict=True):
            need = tiling.tile_rows_read(self.layout, rows)
            network_in = self._network_input(need, stretch, prefit)
            run = tiling.iter_tiled_rows(
                network_in,
                predictor,
                frame_height=self.height,
                row0=need.start,
                rows=rows,
                **self.tiling,
                batch_size=predictor.batch_size,
                out_channels=self.channels + 1,
                fill=fill,
            )
            stitched = yield from _shifted(run, done, total)
            done += n_tiles
            del network_in
            change = stitched[:-1]
            if "free" in needs:
                change_samples.add(change, rows.start)
            spill = self._spill_map("r+")
            spill[:, rows] = change
            del spill, stitched, change
        # 3. the change's statistics
        stats = GuardStats()
        if "free" in needs:
            stats = GuardStats(free=fit_noise_profile_of_change(work_samples, change_samples))
        for need in ("locked", "brightest"):
            if need not in needs:
                continue
            found = yield from self._measure(need, stats, work_samples, done, total)
            stats = GuardStats(**{**stats.__dict__, need: found})
            done += len(self.blocks)
        settings.update(self.options)
        settings["precision"] = predictor.precision
        profile = guard_profile(stats, **self.safeguards)
        if profile is not None:
            settings["noise_profile"] = profile.scaled(self._unit).to_dict()
        self.settings = settings
        self._stats = stats

    def _network_input(self, need: slice, stretch: Any, prefit: Any) -> np.ndarray:
        """(C [+ 1], n, W) network input of the frame's rows ``need``, as in memory."""
        if prefit is None:
            return self._work(self._read(need))
        # the noise map's 3 x 3 box reads a row more each side
        lo, hi = max(0, need.start - 1), min(self.height, need.stop + 1)
        work = self._work(self._read(slice(lo, hi)))
        sigma = noise_map(work, stretch, prefit, self.loaded.softening)
        own = slice(need.start - lo, need.stop - lo)
        return np.concatenate([work[:, own], sigma[np.newaxis, own]], axis=0)

    def _measure(
        self,
        need: str,
        stats: GuardStats,
        work_samples: SampledPlanes,
        done: int,
        total: int,
    ) -> Generator[tuple[int, int], None, Any]:
        """One pass of the safeguards up to where ``need`` is measured, over every block."""
        until = "locked" if need == "locked" else "limited"
        locked = SampledPlanes(work_samples.shape, curvature=False)
        brightest = np.full(self.channels, np.nan)
        for i, rows in enumerate(self.blocks):
            prediction = self._guarded(rows, stats, until=until)[1]
            if need == "locked":
                locked.add(prediction, rows.start)
            else:
                brightest = np.fmax(brightest, brightest_of(prediction))
            yield done + i + 1, total
        if need == "locked":
            with np.errstate(invalid="ignore"):
                return fit_noise_profile(work_samples, locked)
        return tuple(float(v) for v in brightest)

    def _guarded(
        self, rows: slice, stats: GuardStats, until: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input planes, guarded prediction in work units) of a block's own rows."""
        lo = max(0, rows.start - self.reach)
        lo -= lo % self.align  # the lock's blocks start where the frame's do
        hi = min(self.height, rows.stop + self.reach)
        chw = self._read(slice(lo, hi))
        work = self._work(chw)
        spill = self._spill_map("r")
        change = np.array(spill[:, lo:hi])
        del spill
        prediction, _ = guard_change(
            change, work, refit_window=REFIT_WINDOW, stats=stats, until=until, **self.safeguards
        )
        own = slice(rows.start - lo, rows.stop - lo)
        return chw[:, own], prediction[:, own]

    # ----------------------------------------------------------------- the output
    def block(self, i: int) -> np.ndarray:
        """Block ``i`` of the denoised image, in the caller's layout, float32."""
        from napari_astrodenoise.core.pipeline import DenoiseResult

        stats = self.prepare()
        rows = self.blocks[i]
        original, prediction = self._guarded(rows, stats)
        prediction = np.array(prediction)
        if self._unit != 1.0:
            prediction *= np.float32(self._unit)
        mask = None
        if self.star_mask is not None:
            mask = np.asarray(self.star_mask[rows], dtype=np.float32)
        shape = list(self.plane_map.shape)
        shape[self._row_axis()] = rows.stop - rows.start
        result = DenoiseResult(
            original=np.ascontiguousarray(original),
            prediction=prediction,
            model_mask=None,
            plane_map=PlaneMap(tuple(shape), self.plane_map.channel_axis),
            settings={k: self.options[k] for k in ("strength", "star_protection")},
            star_mask=mask,
        )
        return result.take_output()

    def to_dask(self) -> Any:
        """The denoised image as a lazy dask array, chunked in this run's row blocks."""
        import dask
        import dask.array as da

        axis = self._row_axis()
        parts = []
        for i, rows in enumerate(self.blocks):
            shape = list(self.plane_map.shape)
            shape[axis] = rows.stop - rows.start
            task = dask.delayed(self.block, pure=False)(i)
            parts.append(da.from_delayed(task, tuple(shape), dtype=np.float32))
        return da.concatenate(parts, axis=axis)


def _shifted(gen: Generator, offset: int, total: int) -> Generator[tuple[int, int], None, Any]:
    """``gen``'s progress ``(done, _)`` as ``(offset + done, total)``; its return value."""
    while True:
        try:
            done, _ = next(gen)
        except StopIteration as stop:
            return stop.value
        yield offset + done, total


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def denoise_lazy(image: Any, **kwargs: Any) -> Any:
    """:func:`~.pipeline.denoise` of a dask array: a lazy dask array, a row block at a time.

    Takes the arguments of :func:`~.pipeline.denoise` and ``block_rows``, ``memory`` and
    ``spill_dir`` of :class:`OutOfCoreRun`. Nothing runs until a block is computed; the
    first one runs the statistics and the network over the whole frame
    (:meth:`OutOfCoreRun.prepare`), once. Compute it with dask's local schedulers (the
    threaded default): the change map lives in a temporary file on this machine.
    """
    return OutOfCoreRun(image, **kwargs).to_dask()
