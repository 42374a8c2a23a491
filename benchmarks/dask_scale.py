"""Beyond memory and one process: peak memory, time, equivalence and batch scaling.

Measures, through the ``astrodenoise`` command in child processes (peak RSS from the
kernel's accounting of each child, ``os.wait4``):

1. a ``--big`` x ``--big`` float32 mono FITS (default 16384², 1 GiB) denoised with
   ``--memory`` (default 2GB): peak RSS against the goal of 2 GB, time, row blocks;
2. a ``--mid`` x ``--mid`` frame (default 8192²) denoised in memory and out of core: the
   time of each (and their peak RSS);
3. the memory of a run over the size of its blocks (peak RSS less that of the command on a
   tiny frame, over one block's float32 planes), so that a reader can plan a mosaic;
4. ``--equal`` x ``--equal`` (default 4096²): ``denoise`` of a dask array against the
   in-memory run, the largest difference in noise sigmas;
0. ``--open`` x ``--open`` (default 20000², 1.6 GB): the napari reader's layer data (a
   lazy multiscale pyramid), the time to open it and to read a 1024² window at full
   resolution and the whole coarsest level (what a zoomed-out view shows), and the peak
   RSS of the process that did it;
5. ``--frames`` frames of ``--frame-size``² (default 24 of 2048²) on a dask.distributed
   LocalCluster (processes, TCP on localhost) of 1 and then 2 workers: throughput and the
   scaling ratio (cluster start included).

The frames are simulated skies (noise, a gradient, stars), written a row block at a time.
``--model`` runs the network of the shipped model (``default``) or of a small random-weight
ResUNet built here (``small``, width 8, depth 2: the engine's memory and data flow are the
same, the network several times cheaper) for parts 1, 2, 3 and 5; part 4 always uses the
shipped model. Prints a markdown table and writes ``benchmarks/results/dask_scale.md``::

    .venv/bin/python benchmarks/dask_scale.py                       # the sizes above
    .venv/bin/python benchmarks/dask_scale.py --model small         # a slow machine
    .venv/bin/python benchmarks/dask_scale.py --parts open          # part 0 alone
    .venv/bin/python benchmarks/dask_scale.py --big 2048 --mid 1024 --equal 512 \\
        --frames 4 --frame-size 256 --model small                   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _harness import write_results

STARS_PER_MPX = 60


def sky_blocks(h: int, w: int, *, seed: int = 0, rows: int = 1024):
    """(rows, block) of a simulated sky (float32), a block at a time: no whole frame."""
    rng = np.random.default_rng(seed)
    n = max(1, int(STARS_PER_MPX * h * w / 1e6))
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    flux = 20 * rng.pareto(1.5, n) + 50
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        yy = np.arange(r0, r1, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        block = (300 + 40 * yy / h + 20 * xx / w).astype(np.float32)
        for y, x, f in zip(ys, xs, flux, strict=True):
            if r0 - 8 <= y < r1 + 8:
                y0, y1 = max(r0, int(y) - 6), min(r1, int(y) + 7)
                x0, x1 = max(0, int(x) - 6), min(w, int(x) + 7)
                if y0 < y1 and x0 < x1:
                    gy = np.exp(-0.5 * ((np.arange(y0, y1) - y) / 1.5) ** 2)
                    gx = np.exp(-0.5 * ((np.arange(x0, x1) - x) / 1.5) ** 2)
                    block[y0 - r0 : y1 - r0, x0:x1] += f * np.outer(gy, gx).astype(np.float32)
        noise = rng.standard_normal((r1 - r0, w), dtype=np.float32)
        block += noise * np.sqrt(25.0 + np.maximum(block - 300.0, 0.0) / 4.0)
        yield slice(r0, r1), block


def write_sky(path: Path, h: int, w: int, seed: int = 0) -> None:
    from napari_astrodenoise.fits_write import write_fits_blocks

    write_fits_blocks(path, sky_blocks(h, w, seed=seed), (h, w), overwrite=True)


def small_model(folder: Path) -> str:
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import save_model

    torch.manual_seed(0)
    module = ResUNet(ResUNetConfig(in_channels=3, width=8, depth=2))
    torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = folder / "small-bench.safetensors"
    save_model(module, path, name="small-bench", softening=3.0)
    return str(path)


def run_cli(*args: object) -> dict:
    """``astrodenoise`` in a child process: wall seconds, peak RSS (bytes), output."""
    argv = [sys.executable, "-m", "napari_astrodenoise.cli", *map(str, args), "--quiet"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if child.returncode != 0:
        msg = f"astrodenoise {' '.join(map(str, args))} failed ({child.returncode}):\n{text}"
        raise RuntimeError(msg)
    blocks = re.search(r"\((\d+) row blocks\)", text)
    return {
        "seconds": seconds,
        "rss": usage.ru_maxrss * 1024,
        "blocks": int(blocks.group(1)) if blocks else 0,
    }


def block_bytes(h: int, w: int, blocks: int) -> int:
    """float32 bytes of one row block (the whole frame for a run in memory, 0 blocks)."""
    return -(-h // max(1, blocks)) * w * 4


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


OPEN_SCRIPT = """
import sys, time, resource
import numpy as np
import napari_astrodenoise._reader as reader
reader.LAZY_READ_BYTES = 0  # lazy at any size (a mosaic above 512 MiB is lazy anyway)
start = time.perf_counter()
levels, kwargs, _ = reader.read_image_layers(sys.argv[1])[0]
opened = time.perf_counter() - start
levels = levels if isinstance(levels, list) else [levels]
start = time.perf_counter()
window = np.asarray(levels[0][5000:6024, 5000:6024])
full = time.perf_counter() - start
start = time.perf_counter()
coarse = np.asarray(levels[-1])
top = time.perf_counter() - start
print(opened, full, top, len(levels), coarse.shape[0], kwargs.get("multiscale", False))
"""


def napari_open(path: Path) -> tuple[float, float, float, int, int, int]:
    """(open s, 1024² window s, coarsest level s, levels, coarsest side, peak RSS bytes)."""
    argv = [sys.executable, "-c", OPEN_SCRIPT, str(path)]
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(text)
    opened, full, top, levels, side, _ = text.split()[-6:]
    return float(opened), float(full), float(top), int(levels), int(side), usage.ru_maxrss * 1024


def equivalence(n: int, rows: int) -> tuple[float, float, float, float]:
    """(max |dask - memory| in noise sigmas, fraction identical, seconds memory, seconds dask)."""
    import dask.array as da

    from napari_astrodenoise.core.noiselevel import noise_sigma
    from napari_astrodenoise.core.pipeline import denoise
    from napari_astrodenoise.core.weights import load_model

    image = np.empty((n, n), np.float32)
    for part, block in sky_blocks(n, n, seed=1):
        image[part] = block
    model = load_model("default")
    start = time.perf_counter()
    expected = denoise(image, model=model)
    t_mem = time.perf_counter() - start
    start = time.perf_counter()
    got = denoise(da.from_array(image, chunks=(1024, n)), model=model, block_rows=rows).compute()
    t_dask = time.perf_counter() - start
    sigma = float(noise_sigma(image)[0])
    diff = np.abs(got.astype(np.float64) - expected)
    return float(diff.max() / sigma), float(np.mean(got == expected)), t_mem, t_dask


def big_part(args, tmp: Path, common: tuple, base: dict, rows: list) -> None:
    """Part 1 (and 3): the big mosaic out of core through the command."""
    big = tmp / "big.fits"
    write_sky(big, args.big, args.big)
    run = run_cli("denoise", big, "-o", tmp / "big_out.fits", "--memory", args.memory, *common)
    big.unlink()
    (tmp / "big_out.fits").unlink()
    share = block_bytes(args.big, args.big, run["blocks"])
    goal = "goal <= 2 GB: " + ("met" if run["rss"] <= 2e9 else "NOT met")
    rows.append((f"{args.big}² out of core, --memory {args.memory}", gib(run["rss"]), goal))
    rows.append((f"{args.big}² out of core: time", f"{run['seconds']:.0f} s", ""))
    rows.append(
        (
            f"{args.big}² row blocks",
            f"{run['blocks']} of {share / 2**20:.1f} MiB",
            f"memory / block: {(run['rss'] - base['rss']) / share:.1f}",
        )
    )


def mid_part(args, tmp: Path, common: tuple, base: dict, rows: list) -> None:
    """Part 2 (and 3): in memory against out of core on the middle size."""
    mid = tmp / "mid.fits"
    write_sky(mid, args.mid, args.mid)
    mem = run_cli("denoise", mid, "-o", tmp / "mid_mem.fits", "--memory", "1TB", *common)
    ooc = run_cli("denoise", mid, "-o", tmp / "mid_ooc.fits", "--memory", args.memory, *common)
    mid.unlink()
    share_mid = block_bytes(args.mid, args.mid, ooc["blocks"])
    rows.append(
        (f"{args.mid}² in memory: time / peak RSS", f"{mem['seconds']:.0f} s", gib(mem["rss"]))
    )
    rows.append(
        (
            f"{args.mid}² out of core: time / peak RSS",
            f"{ooc['seconds']:.0f} s ({ooc['seconds'] / mem['seconds']:.2f}x)",
            f"{gib(ooc['rss'])}, {ooc['blocks']} blocks, memory / block "
            f"{(ooc['rss'] - base['rss']) / share_mid:.1f}",
        )
    )


def equal_part(args, rows: list) -> None:
    """Part 4: dask against in memory with the shipped model."""
    worst, same, t_mem, t_dask = equivalence(args.equal, args.equal_rows)
    rows.append(
        (
            f"{args.equal}² dask vs memory (shipped model, blocks of {args.equal_rows} rows)",
            f"{worst:.2e} sigma",
            f"{same:.1%} pixels identical; {t_mem:.0f} s vs {t_dask:.0f} s",
        )
    )


def batch_part(args, tmp: Path, common: tuple, rows: list) -> None:
    """Part 5: a night of frames on a LocalCluster of 1, then 2 workers."""
    night = tmp / "night"
    night.mkdir()
    for i in range(args.frames):
        write_sky(night / f"light_{i:03d}.fits", args.frame_size, args.frame_size, seed=10 + i)
    inputs = sorted(night.iterdir())
    times = {}
    for workers in (1, 2):
        out = tmp / f"out{workers}"
        batch = run_cli("denoise", *inputs, "--output-dir", out, "--workers", workers, *common)
        times[workers] = batch["seconds"]
        rows.append(
            (
                f"{args.frames} frames of {args.frame_size}², LocalCluster of {workers}",
                f"{args.frames / batch['seconds'] * 60:.1f} frames/min",
                f"{batch['seconds']:.0f} s, cluster start included",
            )
        )
    rows.append(("scaling, 2 workers over 1", f"{times[1] / times[2]:.2f}x", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="open,big,mid,equal,batch", help="which parts")
    parser.add_argument("--open", type=int, default=20000)
    parser.add_argument("--big", type=int, default=16384)
    parser.add_argument("--mid", type=int, default=8192)
    parser.add_argument("--equal", type=int, default=4096)
    parser.add_argument("--equal-rows", type=int, default=1000, help="block rows of part 4")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--frame-size", type=int, default=2048)
    parser.add_argument("--memory", default="2GB")
    parser.add_argument("--model", choices=("default", "small"), default="default")
    parser.add_argument("--out", default=None, help="results file stem")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    everything = parts >= {"open", "big", "mid", "equal", "batch"}
    args.out = args.out or (
        "dask_scale" if everything else "dask_scale_" + "_".join(sorted(parts))
    )
    load = os.getloadavg()[0]
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        tmp = Path(tmp)
        model = "default" if args.model == "default" else small_model(tmp)
        common = ("--model", model, "--overwrite")

        if "open" in parts:
            mosaic = tmp / "mosaic.fits"
            write_sky(mosaic, args.open, args.open)
            opened, full, top, levels, side, rss = napari_open(mosaic)
            mosaic.unlink()
            rows.append(
                (
                    f"napari reader on {args.open}² float32 ({args.open**2 * 4 / 1e9:.1f} GB)",
                    f"{opened:.1f} s to open",
                    f"{levels} lazy levels down to {side}²; peak RSS {gib(rss)}",
                )
            )
            rows.append(
                (
                    "a 1024² window at full resolution / the coarsest level",
                    f"{full:.2f} s / {top:.2f} s",
                    "read from the file as shown",
                )
            )
        tiny = tmp / "tiny.fits"
        write_sky(tiny, 256, 256)
        base = run_cli("denoise", tiny, "-o", tmp / "tiny_out.fits", *common)
        rows.append(("command on a 256² frame (baseline)", gib(base["rss"]), "peak RSS"))
        if "big" in parts:
            big_part(args, tmp, common, base, rows)
        if "mid" in parts:
            mid_part(args, tmp, common, base, rows)
        if "equal" in parts:
            equal_part(args, rows)
        if "batch" in parts:
            batch_part(args, tmp, common, rows)
    lines = [
        "# Out of core and on a dask cluster",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work "
        f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), "
        "no GPU. Parts 1-3 and 5 run the "
        + (
            "shipped model"
            if args.model == "default"
            else "small random-weight ResUNet (width 8, depth 2) in place of the shipped "
            "model, to fit the machine: the engine, its blocks and memory are the same, the "
            "network several times cheaper"
        )
        + "; part 4 the shipped model. Peak RSS is each command's, from the kernel. "
        "Command: `benchmarks/dask_scale.py " + " ".join(sys.argv[1:]) + "`.",
        "",
        "| measure | value | note |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
